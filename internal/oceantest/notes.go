package oceantest

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// note is a stored note.
type note struct {
	id                 string
	createdAt          time.Time
	userID             string
	text, cw           *string
	visibility         string
	localOnly          bool
	reactionAcceptance *string
	visibleUserIDs     []string
	replyID, renoteID  string
	mentions           []string
	renoteCount        int
	repliesCount       int
	clippedCount       int
	reactions          []reactionCount // in order of first use
	reactedBy          map[string]string
	pairCache          []string // "userId/reaction", at most pairCacheMax
}

// pairCacheMax is Ocean's PER_NOTE_REACTION_USER_PAIR_CACHE_MAX.
const pairCacheMax = 16

// packOpts are NoteEntityService.pack's options.
type packOpts struct {
	detail        bool
	withPairCache bool // withReactionAndUserPairCache
}

type reactionCount struct {
	reaction string
	n        int
}

var (
	errNoSuchRenoteTarget  = apiErr("NO_SUCH_RENOTE_TARGET", "No such Renote target.", "b5c90186-4ab0-49c8-9bba-a1f76c282ba4")
	errCannotReRenote      = apiErr("CANNOT_RENOTE_TO_A_PURE_RENOTE", "You can not Renote a pure Renote.", "fd4cc33e-2a37-48dd-99cc-9b806eb2031a")
	errNoSuchReplyTarget   = apiErr("NO_SUCH_REPLY_TARGET", "No such reply target.", "749ee0f6-d3da-459a-bf02-282e2da4292c")
	errCannotReplyToRenote = apiErr("CANNOT_REPLY_TO_A_PURE_RENOTE", "You can not reply to a pure Renote.", "3ac74a84-8fd5-4bb0-870f-01804f82ce15")
	errNoteBlocked         = apiErr("YOU_HAVE_BEEN_BLOCKED", "You have been blocked by this user.", "b390d7e1-8a5e-46ed-b625-06271cafd3d3")
	errShowNoSuchNote      = apiErr("NO_SUCH_NOTE", "No such note.", "24fcbfc6-2e37-42b6-8388-c29b3861a08d")
	errReactNoSuchNote     = apiErr("NO_SUCH_NOTE", "No such note.", "033d0620-5bfe-4027-965d-980b0c85a3ea")
	errAlreadyReacted      = apiErr("ALREADY_REACTED", "You are already reacting to that note.", "71efcf98-86d6-4e2b-b2ad-9d032369366b")
	errReactionBlocked     = apiErr("YOU_HAVE_BEEN_BLOCKED", "You cannot react this note because you have been blocked by this user.", "20ef5475-9f38-4e4c-bd33-de6d979498ec")
	errCannotReactToRenote = apiErr("CANNOT_REACT_TO_RENOTE", "You cannot react to Renote.", "eaccdc08-ddef-43fe-908f-d108faad57f5")
)

func (n *note) isPureRenote() bool {
	return n.renoteID != "" && n.text == nil
}

func (n *note) reactionTotal() int {
	t := 0
	for _, r := range n.reactions {
		t += r.n
	}
	return t
}

// capturedNote is the part of a packed note the fake keeps.
type capturedNote struct {
	ID                 string          `json:"id"`
	CreatedAt          time.Time       `json:"createdAt"`
	UserID             string          `json:"userId"`
	Text               *string         `json:"text"`
	CW                 *string         `json:"cw"`
	Visibility         string          `json:"visibility"`
	LocalOnly          bool            `json:"localOnly"`
	ReactionAcceptance *string         `json:"reactionAcceptance"`
	VisibleUserIDs     []string        `json:"visibleUserIds"`
	RenoteCount        int             `json:"renoteCount"`
	RepliesCount       int             `json:"repliesCount"`
	ClippedCount       int             `json:"clippedCount"`
	Reactions          map[string]int  `json:"reactions"`
	ReplyID            *string         `json:"replyId"`
	RenoteID           *string         `json:"renoteId"`
	Mentions           []string        `json:"mentions"`
	Reply              json.RawMessage `json:"reply"`
	Renote             json.RawMessage `json:"renote"`
}

func (c capturedNote) note() *note {
	n := &note{id: c.ID, createdAt: c.CreatedAt, userID: c.UserID, text: c.Text, cw: c.CW,
		visibility: c.Visibility, localOnly: c.LocalOnly, reactionAcceptance: c.ReactionAcceptance,
		visibleUserIDs: c.VisibleUserIDs, mentions: c.Mentions, renoteCount: c.RenoteCount,
		repliesCount: c.RepliesCount, clippedCount: c.ClippedCount, reactedBy: map[string]string{}}
	if c.ReplyID != nil {
		n.replyID = *c.ReplyID
	}
	if c.RenoteID != nil {
		n.renoteID = *c.RenoteID
	}
	keys := make([]string, 0, len(c.Reactions))
	for k := range c.Reactions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		n.reactions = append(n.reactions, reactionCount{k, c.Reactions[k]})
	}
	return n
}

// storeCaptured keeps a replayed createdNote and the notes nested in it, and
// counts it on its author and on the notes it replies to or renotes.
func (st *state) storeCaptured(raw json.RawMessage, at time.Time) {
	var c capturedNote
	if err := json.Unmarshal(raw, &c); err != nil || c.ID == "" {
		return
	}
	n := c.note()
	for _, nested := range []struct {
		id  string
		raw json.RawMessage
		inc func(*note)
	}{
		{n.replyID, c.Reply, func(t *note) { t.repliesCount++ }},
		{n.renoteID, c.Renote, func(t *note) { t.renoteCount++ }},
	} {
		if nested.id == "" {
			continue
		}
		if t := st.notes[nested.id]; t != nil {
			nested.inc(t)
		} else if len(nested.raw) > 0 {
			st.storeNested(nested.raw)
		}
	}
	if _, has := st.notes[n.id]; !has {
		st.notes[n.id] = n
		st.noteCreated(n.userID, at)
	}
}

func (st *state) storeNested(raw json.RawMessage) {
	var c capturedNote
	if err := json.Unmarshal(raw, &c); err != nil || c.ID == "" {
		return
	}
	if _, has := st.notes[c.ID]; !has {
		st.notes[c.ID] = c.note()
		st.noteCreated(c.UserID, c.CreatedAt)
	}
}

func (st *state) noteCreated(userID string, at time.Time) {
	if u := st.users[userID]; u != nil {
		u.notesCount++
		t := at
		u.updatedAt = &t
	}
}

// newID returns an Ocean-style aidx id: 8 base36 digits of milliseconds since
// 2000-01-01, a 4-digit node id and a 4-digit counter.
func (st *state) newID(now time.Time) string {
	const epoch2000 = 946684800000
	ms := max(now.UnixMilli()-epoch2000, 0)
	st.seq++
	return pad36(ms, 8) + "fake" + pad36(int64(st.seq), 4)
}

func pad36(v int64, width int) string {
	s := strconv.FormatInt(v, 36)
	if len(s) >= width {
		return s[len(s)-width:]
	}
	return strings.Repeat("0", width-len(s)) + s
}

// mentionRe finds @username and @username@host in note text.
var mentionRe = regexp.MustCompile(`(?:^|[^\w@.])@([A-Za-z0-9_]+)(?:@([A-Za-z0-9.\-]+[A-Za-z0-9]))?`)

// visible reports whether viewer (nil: anonymous) may see n in full.
func (st *state) visible(n *note, viewer *user) bool {
	switch n.visibility {
	case "followers":
		if viewer == nil {
			return false
		}
		if viewer.id == n.userID || slices.Contains(n.mentions, viewer.id) {
			return true
		}
		if r := st.notes[n.replyID]; r != nil && r.userID == viewer.id {
			return true
		}
		_, follows := st.follows[edge{viewer.id, n.userID}]
		return follows
	case "specified":
		return viewer != nil && (viewer.id == n.userID || slices.Contains(n.visibleUserIDs, viewer.id))
	default:
		return true
	}
}

// pack writes n the way Ocean's NoteEntityService packs it for viewer.
func (st *state) pack(n *note, viewer *user, opts packOpts, depth int) *object {
	o := newObject()
	o.set("id", n.id)
	o.set("createdAt", isoTime(n.createdAt))
	o.set("userId", n.userID)
	if u := st.users[n.userID]; u != nil {
		o.set("user", st.lite(u))
	}
	o.set("text", n.text)
	o.set("cw", n.cw)
	o.set("visibility", n.visibility)
	o.set("localOnly", n.localOnly)
	o.set("reactionAcceptance", n.reactionAcceptance)
	if n.visibility == "specified" {
		o.set("visibleUserIds", nonNil(n.visibleUserIDs))
	}
	o.set("renoteCount", n.renoteCount)
	o.set("repliesCount", n.repliesCount)
	o.set("reactionCount", n.reactionTotal())
	reactions := newObject()
	for _, r := range n.reactions {
		reactions.set(r.reaction, r.n)
	}
	o.set("reactions", reactions)
	o.set("reactionEmojis", newObject())
	if opts.withPairCache {
		o.set("reactionAndUserPairCache", nonNil(n.pairCache))
	}
	o.set("fileIds", []string{})
	o.set("files", []any{})
	o.set("replyId", nullable(n.replyID))
	var replyUserID any
	reply := st.notes[n.replyID]
	if reply != nil {
		replyUserID = reply.userID
	}
	o.set("replyUserId", replyUserID)
	o.set("renoteId", nullable(n.renoteID))
	if len(n.mentions) > 0 {
		o.set("mentions", n.mentions)
	}
	if opts.detail {
		o.set("clippedCount", n.clippedCount)
		if reply != nil && depth < 8 {
			o.set("reply", st.pack(reply, viewer, packOpts{withPairCache: opts.withPairCache}, depth+1))
		}
		if rn := st.notes[n.renoteID]; rn != nil && depth < 8 {
			o.set("renote", st.pack(rn, viewer, packOpts{detail: true, withPairCache: opts.withPairCache}, depth+1))
		}
		// Ocean looks up the viewer's reaction only on notes older than 2 s.
		if viewer != nil && len(n.reactions) > 0 && st.now().Sub(n.createdAt) >= 2*time.Second {
			if r, has := n.reactedBy[viewer.id]; has {
				o.set("myReaction", r)
			}
		}
	}
	if !st.visible(n, viewer) {
		o.del("visibleUserIds")
		o.set("fileIds", []string{})
		o.set("files", []any{})
		o.set("text", nil)
		o.set("cw", nil)
		o.set("isHidden", true)
	}
	return o
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Server) apiNotesCreate(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A request the capture holds, made by the recorded author, is answered
	// exactly as Ocean answered it.
	for _, c := range s.calls {
		if c.Endpoint != r.endpoint || c.Status != 200 || !sameParams(c.Request, r.params) {
			continue
		}
		var resp struct {
			CreatedNote capturedNote `json:"createdNote"`
		}
		if err := json.Unmarshal(c.Response, &resp); err != nil || resp.CreatedNote.UserID != r.caller.id {
			continue
		}
		var raw struct {
			CreatedNote json.RawMessage `json:"createdNote"`
		}
		_ = json.Unmarshal(c.Response, &raw)
		s.st.storeCaptured(raw.CreatedNote, resp.CreatedNote.CreatedAt)
		if n := s.st.notes[resp.CreatedNote.ID]; n != nil {
			s.fireNote(n)
		}
		return replayOf(c)
	}
	return s.createNote(r)
}

// errCannotScheduleToPast is notes/create's answer to a scheduledAt in the past.
var errCannotScheduleToPast = apiErr("CANNOT_SCHEDULE_TO_PAST", "Cannot schedule to the past.", "e577d185-8179-4a17-b47f-6093985558e6")

// repeatWindow is how long Ocean answers a repeated notes/create with the
// earlier note (ocean.NoteCreateRepeatWindow).
const repeatWindow = ocean.NoteCreateRepeatWindow

// created is a note Ocean remembers under a notes/create request.
type created struct {
	noteID string
	at     time.Time
}

// repeatKey is what Ocean keys a notes/create by: the user and the request's
// parameters (without the credential).
func repeatKey(userID string, params map[string]any) string {
	b, _ := json.Marshal(params) // maps marshal with sorted keys
	return userID + " " + string(b)
}

func (s *Server) createNote(r *request) reply {
	st, me, p := s.st, r.caller, r.params
	noCreatedNote, _ := p["noCreatedNote"].(bool)
	key := repeatKey(me.id, p)
	if c, has := st.repeats[key]; has && s.now().Sub(c.at) < repeatWindow {
		if n := st.notes[c.noteID]; n != nil {
			// The same request again within the window: the earlier note,
			// packed afresh; nothing is created.
			if noCreatedNote {
				return noContent()
			}
			o := newObject()
			o.set("createdNote", st.pack(n, me, packOpts{detail: true}, 0))
			return ok(o)
		}
	}
	if at, has := p["scheduledAt"]; has && at != nil {
		ms, isNum := at.(float64)
		if !isNum || ms != float64(int64(ms)) {
			return fail(ocean.ErrInvalidParam)
		}
		if ms != 0 {
			if time.UnixMilli(int64(ms)).Truncate(time.Second).Before(s.now()) {
				return fail(errCannotScheduleToPast)
			}
			// A scheduled note: Ocean's queue posts it later (the fake
			// never does); the answer shows nothing.
			return noContent()
		}
	}
	text, badText := optString(p, "text")
	cw, badCW := optString(p, "cw")
	acceptance, badAcc := optString(p, "reactionAcceptance")
	if badText || badCW || badAcc {
		return fail(ocean.ErrInvalidParam)
	}
	if text != nil && *text == "" {
		text = nil
	}
	visibility := "public"
	if v, has := p["visibility"]; has {
		vs, isStr := v.(string)
		if !isStr || !slices.Contains([]string{"public", "home", "followers", "specified"}, vs) {
			return fail(ocean.ErrInvalidParam)
		}
		visibility = vs
	}
	localOnly, _ := p["localOnly"].(bool)
	replyID, _ := p["replyId"].(string)
	renoteID, _ := p["renoteId"].(string)
	if text == nil && renoteID == "" {
		return fail(ocean.ErrInvalidParam.With(map[string]any{"reason": "text or renoteId is required"}))
	}
	var reply, renote *note
	if renoteID != "" {
		if renote = st.notes[renoteID]; renote == nil {
			return fail(errNoSuchRenoteTarget)
		}
		if renote.isPureRenote() {
			return fail(errCannotReRenote)
		}
		if st.blocks[edge{renote.userID, me.id}] {
			return fail(errNoteBlocked)
		}
	}
	if replyID != "" {
		if reply = st.notes[replyID]; reply == nil {
			return fail(errNoSuchReplyTarget)
		}
		if reply.isPureRenote() {
			return fail(errCannotReplyToRenote)
		}
		if st.blocks[edge{reply.userID, me.id}] {
			return fail(errNoteBlocked)
		}
	}
	var visible []string
	if visibility == "specified" {
		ids, _ := p["visibleUserIds"].([]any)
		for _, v := range ids {
			if id, _ := v.(string); st.users[id] != nil && !slices.Contains(visible, id) {
				visible = append(visible, id)
			}
		}
		if reply != nil && reply.userID != me.id && !slices.Contains(visible, reply.userID) {
			visible = append(visible, reply.userID)
		}
	}
	// mentions: local @users of cw and text, the replied-to user, the addressees.
	var mentions []string
	add := func(id string) {
		if !slices.Contains(mentions, id) {
			mentions = append(mentions, id)
		}
	}
	for _, s := range []*string{cw, text} {
		if s == nil {
			continue
		}
		for _, m := range mentionRe.FindAllStringSubmatch(*s, -1) {
			if m[2] != "" {
				continue
			}
			if u := st.userByName(m[1]); u != nil {
				add(u.id)
			}
		}
	}
	if reply != nil && reply.userID != me.id {
		add(reply.userID)
	}
	for _, id := range visible {
		add(id)
	}
	now := s.now()
	n := &note{id: st.newID(now), createdAt: now.UTC().Truncate(time.Millisecond), userID: me.id,
		text: text, cw: cw, visibility: visibility, localOnly: localOnly,
		reactionAcceptance: acceptance, visibleUserIDs: visible, replyID: replyID,
		renoteID: renoteID, mentions: mentions, reactedBy: map[string]string{}}
	st.notes[n.id] = n
	st.noteCreated(me.id, n.createdAt)
	if reply != nil {
		reply.repliesCount++
	}
	if renote != nil {
		renote.renoteCount++
	}
	st.repeats[key] = created{noteID: n.id, at: now}
	s.fireNote(n)
	if noCreatedNote {
		return noContent()
	}
	o := newObject()
	o.set("createdNote", st.pack(n, me, packOpts{detail: true}, 0))
	return ok(o)
}

// fireNote fires `note` to the author's native hooks: the note packed for no
// viewer, with the reaction pair cache, as Ocean's webhook carries it.
func (s *Server) fireNote(n *note) {
	s.fire(n.userID, "note", map[string]any{"note": s.st.pack(n, nil, packOpts{withPairCache: true}, 0)})
}

// optString reads an optional string-or-null parameter; bad reports another type.
func optString(p map[string]any, key string) (v *string, bad bool) {
	raw, has := p[key]
	if !has || raw == nil {
		return nil, false
	}
	s, isStr := raw.(string)
	if !isStr {
		return nil, true
	}
	return &s, false
}

// NoteAs returns the note noteID packed as Ocean packs a `mention` body's
// note for userID (detail, hidden where userID may not see it, no pair
// cache), or nil when either is unknown.
func (s *Server) NoteAs(noteID, userID string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, u := s.st.notes[noteID], s.st.users[userID]
	if n == nil || u == nil {
		return nil
	}
	return encode(s.st.pack(n, u, packOpts{detail: true}, 0))
}

func (s *Server) apiNotesShow(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, isStr := r.params["noteId"].(string)
	if !isStr || id == "" {
		return fail(ocean.ErrInvalidParam)
	}
	n := s.st.notes[id]
	if n == nil {
		return fail(errShowNoSuchNote)
	}
	o := s.st.pack(n, r.caller, packOpts{detail: true, withPairCache: true}, 0)
	if r.caller == nil {
		o.del("reactionAndUserPairCache")
	}
	return ok(o)
}

func (s *Server) apiReactionsCreate(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, isStr := r.params["noteId"].(string)
	given, isStr2 := r.params["reaction"].(string)
	if !isStr || !isStr2 || id == "" {
		return fail(ocean.ErrInvalidParam)
	}
	n := s.st.notes[id]
	if n == nil || !s.st.visible(n, r.caller) {
		return fail(errReactNoSuchNote)
	}
	if s.st.blocks[edge{n.userID, r.caller.id}] {
		return fail(errReactionBlocked)
	}
	if n.isPureRenote() {
		return fail(errCannotReactToRenote)
	}
	reaction := normalizeReaction(given)
	if n.reactionAcceptance != nil && *n.reactionAcceptance == "likeOnly" {
		reaction = fallbackReaction
	}
	pair := func(reaction string) string { return r.caller.id + "/" + reaction }
	if old, has := n.reactedBy[r.caller.id]; has {
		if old == reaction {
			return fail(errAlreadyReacted)
		}
		n.addReaction(old, -1)
		n.pairCache = slices.DeleteFunc(n.pairCache, func(p string) bool { return p == pair(old) })
	}
	n.reactedBy[r.caller.id] = reaction
	n.addReaction(reaction, 1)
	if len(n.pairCache) < pairCacheMax {
		n.pairCache = append(n.pairCache, pair(reaction))
	}
	return noContent()
}

func (n *note) addReaction(reaction string, delta int) {
	for i := range n.reactions {
		if n.reactions[i].reaction == reaction {
			n.reactions[i].n += delta
			if n.reactions[i].n <= 0 {
				n.reactions = slices.Delete(n.reactions, i, i+1)
			}
			return
		}
	}
	if delta > 0 {
		n.reactions = append(n.reactions, reactionCount{reaction, delta})
	}
}

// fallbackReaction is what Ocean stores for a reaction it cannot use.
const fallbackReaction = "\u2764"

// legacyReactions are the old named reactions Ocean still converts.
var legacyReactions = map[string]string{
	"like": "👍", "love": "\u2764", "laugh": "😆", "hmm": "🤔", "surprise": "😮",
	"congrats": "🎉", "angry": "💢", "confused": "😥", "rip": "😇", "pudding": "🍮", "star": "⭐",
}

var customEmojiRe = regexp.MustCompile(`^:[\w+-]+(?:@[\w.-]+)?:$`)

// normalizeReaction does what Ocean's ReactionService does with a reaction
// from a local user: a legacy name becomes its emoji, the first Unicode emoji
// of the string is kept (without variation selectors unless it is a ZWJ
// sequence), anything else (the fake has no custom emojis) becomes the
// fallback ❤. The emoji test approximates the emoji-regex package.
func normalizeReaction(r string) string {
	if v, ok := legacyReactions[r]; ok {
		return v
	}
	if customEmojiRe.MatchString(r) {
		return fallbackReaction
	}
	runes := []rune(r)
	for i, c := range runes {
		if !isEmojiBase(c) {
			continue
		}
		end := emojiEnd(runes, i)
		emoji := string(runes[i:end])
		if !strings.ContainsRune(emoji, 0x200D) {
			emoji = strings.ReplaceAll(emoji, "\uFE0F", "")
		}
		return emoji
	}
	return fallbackReaction
}

// emojiEnd returns the index after the emoji sequence starting at runes[i].
func emojiEnd(runes []rune, i int) int {
	j := i + 1
	if isRegional(runes[i]) && j < len(runes) && isRegional(runes[j]) {
		return j + 1 // a flag
	}
	for j < len(runes) {
		c := runes[j]
		switch {
		case c == 0xFE0F || c == 0x20E3 || (c >= 0x1F3FB && c <= 0x1F3FF) || (c >= 0xE0020 && c <= 0xE007F):
			j++
		case c == 0x200D && j+1 < len(runes) && isEmojiBase(runes[j+1]):
			j += 2
		default:
			return j
		}
	}
	return j
}

func isRegional(c rune) bool { return c >= 0x1F1E6 && c <= 0x1F1FF }

func isEmojiBase(c rune) bool {
	switch {
	case c >= 0x1F000 && c <= 0x1FAFF,
		c >= 0x2600 && c <= 0x27BF,
		c >= 0x2B00 && c <= 0x2BFF,
		c >= 0x2190 && c <= 0x21FF,
		c >= 0x2300 && c <= 0x23FF,
		c == 0x00A9, c == 0x00AE, c == 0x203C, c == 0x2049, c == 0x2122, c == 0x2139,
		c == 0x3030, c == 0x303D, c == 0x3297, c == 0x3299:
		return true
	}
	return false
}
