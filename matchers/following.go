package matchers

import (
	"fmt"

	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// userIDParam is the parameter of users/show and users/relation.
type userIDParam struct {
	UserID string `json:"userId"`
}

// targetID is the userId the call named, checked against the id in Ocean's
// answer (the target's UserLite): a mismatch is an answer we do not trust.
func (c *call) targetID() (string, error) {
	id := c.requestString("userId")
	answered := stringField(c.answer, "id")
	switch {
	case id == "" && answered == "":
		return "", fmt.Errorf("no target user id: %w", errMalformed)
	case id == "":
		return answered, nil
	case answered != "" && answered != id:
		return "", fmt.Errorf("answer is another user: %w", errMalformed)
	}
	return id, nil
}

// userView reads users/show of id as the caller sees it.
func (c *call) userView(id string) (gjson.Result, error) {
	v, err := c.readObject("users/show", userIDParam{UserID: id})
	if err == nil && stringField(v, "id") != id {
		err = fmt.Errorf("users/show: answer is another user: %w", errMalformed)
	}
	return v, err
}

// relationTo reads users/relation of id as the caller sees it.
func (c *call) relationTo(id string) (relation, error) {
	res, err := c.read("users/relation", userIDParam{UserID: id})
	if err != nil {
		return relation{}, err
	}
	rel, err := parseRelation(res, id)
	if err != nil {
		return relation{}, fmt.Errorf("users/relation: %w", err)
	}
	return rel, nil
}

// callerSeenBy is the caller as the other user sees them, with the relation
// set by adjust: the caller's own public view and the mirror of the caller's
// relation to other. Used where Ocean packs the caller for a user whose token
// the sidecar does not have (see seenBy for what is approximated).
func (c *call) callerSeenBy(callerID, other string, known *relation, adjust func(*relation)) ([]byte, error) {
	self, err := c.userView(callerID)
	if err != nil {
		return nil, err
	}
	var rel relation
	if known != nil {
		rel = *known
	} else if rel, err = c.relationTo(other); err != nil {
		return nil, err
	}
	seen := rel.mirrored()
	adjust(&seen)
	// The caller's pinned notes are the caller's own: the other user sees a
	// followers-only one as a follower of the caller, which seen tells.
	viewer := ocean.Viewer{ID: other, Follows: func(author string) bool {
		return author == callerID && seen.following
	}}
	return seenBy(self, seen, viewer, c.e.now()), nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// deriveFollowingCreate: only a follow that happened (not a pending request)
// fires `follow` to the caller (the followee as the caller sees it) and
// `followed` to the followee (the caller as UserLite). users/relation after
// the call tells which.
func deriveFollowingCreate(c *call) error {
	followee, err := c.targetID()
	if err != nil {
		return err
	}
	wantFollowed := c.wants(followee, webhook.Followed)
	anyFollow := c.e.subs.AnySubscribed(webhook.Follow)
	if !wantFollowed && !anyFollow {
		return nil
	}
	caller, err := c.callerID()
	if err != nil {
		c.skip(b2i(wantFollowed)+b2i(anyFollow), "me", err)
		return nil
	}
	if caller == followee {
		return nil
	}
	wantFollow := c.wants(caller, webhook.Follow)
	if !wantFollow && !wantFollowed {
		return nil
	}
	rel, err := c.relationTo(followee)
	if err != nil {
		c.skip(b2i(wantFollow)+b2i(wantFollowed), "users/relation", err)
		return nil
	}
	if !rel.following {
		// A pending request (hasPendingFollowRequestFromYou) fires nothing
		// until it is accepted.
		return nil
	}
	if wantFollow {
		if view, err := c.userView(followee); err != nil {
			c.skip(1, "users/show", err)
		} else {
			c.emit(webhook.Follow, caller, userBody([]byte(view.Raw)))
		}
	}
	if wantFollowed {
		if self, err := c.userView(caller); err != nil {
			c.skip(1, "users/show", err)
		} else {
			c.emit(webhook.Followed, followee, userBody(userLite(self)))
		}
	}
	return nil
}

// deriveFollowingDelete: `unfollow` to the caller, with the former followee
// as the caller sees them after the change.
func deriveFollowingDelete(c *call) error {
	followee, err := c.targetID()
	if err != nil {
		return err
	}
	caller, err := c.callerID()
	if err != nil {
		c.skip(1, "me", err)
		return nil
	}
	if !c.wants(caller, webhook.Unfollow) {
		return nil
	}
	view, err := c.userView(followee)
	if err != nil {
		c.skip(1, "users/show", err)
		return nil
	}
	c.emit(webhook.Unfollow, caller, userBody([]byte(view.Raw)))
	return nil
}

// deriveFollowingInvalidate: the caller removed a follower; `unfollow` to
// that follower with the caller as the follower sees them (approximated:
// the follower's token is not ours).
func deriveFollowingInvalidate(c *call) error {
	return c.unfollowToOther(func(r *relation) {
		r.following = false
		r.requestFromYou = false
	})
}

// deriveRequestReject: rejecting a follow request fires `unfollow` to the
// requester with the caller as the requester sees them (approximated).
func deriveRequestReject(c *call) error {
	return c.unfollowToOther(func(r *relation) {
		r.following = false
		r.requestFromYou = false
	})
}

// unfollowToOther emits `unfollow` to the user the request names, with the
// caller's body as that user sees it after the change.
func (c *call) unfollowToOther(adjust func(*relation)) error {
	other := c.requestString("userId")
	if other == "" {
		return fmt.Errorf("no userId in the request: %w", errMalformed)
	}
	if !c.wants(other, webhook.Unfollow) {
		return nil
	}
	caller, err := c.callerID()
	if err != nil {
		c.skip(1, "me", err)
		return nil
	}
	body, err := c.callerSeenBy(caller, other, nil, adjust)
	if err != nil {
		c.skip(1, "caller view", err)
		return nil
	}
	c.emit(webhook.Unfollow, other, userBody(body))
	return nil
}

// deriveRequestAccept: accepting a request inserts the follow: `follow` to
// the requester (the caller as the requester sees them, approximated) and
// `followed` to the caller (the requester as UserLite).
func deriveRequestAccept(c *call) error {
	requester := c.requestString("userId")
	if requester == "" {
		return fmt.Errorf("no userId in the request: %w", errMalformed)
	}
	wantFollow := c.wants(requester, webhook.Follow)
	anyFollowed := c.e.subs.AnySubscribed(webhook.Followed)
	if !wantFollow && !anyFollowed {
		return nil
	}
	caller, err := c.callerID()
	if err != nil {
		c.skip(b2i(wantFollow)+b2i(anyFollowed), "me", err)
		return nil
	}
	wantFollowed := c.wants(caller, webhook.Followed)

	// users/show of the requester carries the caller's relation flags too.
	var known *relation
	if wantFollowed {
		if view, err := c.userView(requester); err != nil {
			c.skip(1, "users/show", err)
		} else {
			c.emit(webhook.Followed, caller, userBody(userLite(view)))
			if rel, err := parseRelation(view, requester); err == nil {
				known = &rel
			}
		}
	}
	if wantFollow {
		body, err := c.callerSeenBy(caller, requester, known, func(r *relation) {
			r.following = true
			r.requestFromYou = false
		})
		if err != nil {
			c.skip(1, "caller view", err)
		} else {
			c.emit(webhook.Follow, requester, userBody(body))
		}
	}
	return nil
}

// blockState is what beforeBlockingCreate leaves for deriveBlockingCreate.
type blockState struct {
	caller, blockee         string
	wantCaller, wantBlockee bool
	rel                     relation // the caller's relation to the blockee before the block
	err                     error    // a read before the block failed
	lostIfErr               int      // events the failed read may have cost
}

// beforeBlockingCreate reads, before the block is forwarded, which relations
// between caller and blockee exist: the block removes them all.
func beforeBlockingCreate(c *call) {
	blockee := c.requestString("userId")
	if blockee == "" {
		return
	}
	st := &blockState{blockee: blockee, wantBlockee: c.wants(blockee, webhook.Unfollow)}
	c.obs.State = st
	caller, err := c.callerID()
	if err != nil {
		st.err, st.lostIfErr = err, 1+b2i(st.wantBlockee)
		return
	}
	st.caller = caller
	st.wantCaller = c.wants(caller, webhook.Unfollow)
	if caller == blockee || (!st.wantCaller && !st.wantBlockee) {
		st.wantCaller, st.wantBlockee = false, false
		return
	}
	if st.rel, err = c.relationTo(blockee); err != nil {
		st.err, st.lostIfErr = err, b2i(st.wantCaller)+b2i(st.wantBlockee)
	}
}

// deriveBlockingCreate: each follow or pending request the block removed
// fires `unfollow` to its follower. The caller's body is Ocean's answer (the
// blockee as the blocker sees them after the block); the blockee's is the
// caller as the blockee sees them (approximated).
func deriveBlockingCreate(c *call) error {
	st, ok := c.obs.State.(*blockState)
	if !ok || st == nil {
		return nil
	}
	if st.err != nil {
		c.skip(st.lostIfErr, "relation before block", st.err)
		return nil
	}
	if st.wantCaller && (st.rel.following || st.rel.requestFromYou) {
		if stringField(c.answer, "id") != st.blockee {
			return fmt.Errorf("answer is not the blockee: %w", errMalformed)
		}
		c.emit(webhook.Unfollow, st.caller, userBody([]byte(c.answer.Raw)))
	}
	if st.wantBlockee && (st.rel.followed || st.rel.requestToYou) {
		body, err := c.callerSeenBy(st.caller, st.blockee, &st.rel, func(r *relation) {
			r.following, r.followed = false, false
			r.requestFromYou, r.requestToYou = false, false
			r.blocked = true // the caller now blocks the viewer
		})
		if err != nil {
			c.skip(1, "caller view", err)
		} else {
			c.emit(webhook.Unfollow, st.blockee, userBody(body))
		}
	}
	return nil
}
