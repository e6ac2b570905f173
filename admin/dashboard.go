package admin

import (
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// The dashboard: server-rendered pages that work without JavaScript, on a
// phone as on a desk. It shows the queue (depths, the oldest ready
// delivery's age, and rates sampled from the registry), every hook sorted by
// failure, and one hook's recent deliveries with their attempts; it
// redelivers dead letters and switches hooks on and off through forms
// (POST, a CSRF token, same origin; see guard).

var (
	//go:embed dashboard.html
	dashboardHTML string
	//go:embed dashboard.css
	dashboardCSS []byte
)

// Limits of the pages.
const (
	// hooksShown is how many hooks the overview lists unless asked for more.
	hooksShown = 100
	// deliveriesShown is how many deliveries one hook page lists.
	deliveriesShown = 25
	// excerptRunes bounds the receiver answer shown for an attempt.
	excerptRunes = 300
)

// csp lets the pages load nothing but their own style sheet, and post forms
// only to the listener itself.
const csp = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type pages struct{ t *template.Template }

func newPages() (*pages, error) {
	t, err := template.New("dashboard").Funcs(template.FuncMap{
		"ago":          ago,
		"ts":           timestamp,
		"status":       statusText,
		"rate":         func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) },
		"sessionHours": func() int { return int(SessionLifetime.Hours()) },
	}).Parse(dashboardHTML)
	if err != nil {
		return nil, fmt.Errorf("dashboard templates: %w", err)
	}
	return &pages{t: t}, nil
}

func (a *Admin) dashboardRoutes(mux *http.ServeMux, open func(http.Handler) http.Handler) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, dashPrefix, http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+dashPrefix+"style.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(dashboardCSS)
	})
	mux.HandleFunc("GET "+loginPath, a.loginPage)
	mux.HandleFunc("POST "+loginPath, a.login)
	mux.HandleFunc("POST "+dashPrefix+"logout", a.logout)
	mux.Handle("GET "+dashPrefix+"{$}", open(http.HandlerFunc(a.overview)))
	mux.Handle("GET "+dashPrefix+"hooks/{id}", open(http.HandlerFunc(a.hookPage)))
	mux.Handle("POST "+dashPrefix+"hooks/{id}/active", open(http.HandlerFunc(a.setActive)))
	mux.Handle("POST "+dashPrefix+"hooks/{id}/redeliver", open(http.HandlerFunc(a.redeliver)))
}

// page is what every page shows.
type page struct {
	Title    string
	Listener string // the admin listener's address, as the browser reached it
	CSRF     string // the forms' CSRF token; "" for a bearer (no forms need one)
	LoggedIn bool   // with a session: a logout button
	Notice   string
	Error    string
	Now      time.Time
}

func (a *Admin) page(r *http.Request, title string) page {
	au := authOf(r)
	return page{Title: title, Listener: r.Host, CSRF: a.sessions.csrf(au.session), LoggedIn: au.session != "",
		Notice: notices[r.URL.Query().Get("done")], Now: a.opts.Now()}
}

// notices are the messages a form's redirect may ask for (?done=): fixed
// texts, so that nothing from the URL is shown.
var notices = map[string]string{
	"redelivered":  "The delivery is queued again.",
	"redelivering": "Every dead letter of this hook is being queued again, in the background.",
	"activated":    "The hook is active: it receives events again, and auto-disable's clock starts afresh.",
	"deactivated":  "The hook is inactive: new events are not queued for it.",
	"missing":      "That delivery is gone (expired, or its hook was deleted).",
}

func (a *Admin) render(w http.ResponseWriter, status int, name string, data any) {
	var b strings.Builder
	if err := a.pages.t.ExecuteTemplate(&b, name, data); err != nil {
		a.log.Error("admin: render dashboard", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// loginData is the login page.
type loginData struct {
	page
	Next string
}

func (a *Admin) loginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if _, ok := a.guard.authenticate(r); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	a.render(w, http.StatusOK, "login", loginData{page: a.page(r, "Log in"), Next: next})
}

// login takes the admin token from the login form once and answers with a
// session cookie (see session.go).
func (a *Admin) login(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.PostFormValue("next"))
	if !a.guard.isToken(strings.TrimSpace(r.PostFormValue("token"))) {
		a.log.Warn("admin: dashboard login with a wrong token", "remote", r.RemoteAddr)
		p := a.page(r, "Log in")
		p.Error = "That is not the admin token."
		a.render(w, http.StatusUnauthorized, "login", loginData{page: p, Next: next})
		return
	}
	setSession(w, r, a.sessions.issue())
	a.log.Info("admin: dashboard login", "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (a *Admin) logout(w http.ResponseWriter, r *http.Request) {
	clearSession(w, r)
	http.Redirect(w, r, loginPath, http.StatusSeeOther)
}

// safeNext keeps a redirect after login on the dashboard.
func safeNext(next string) string {
	if !strings.HasPrefix(next, dashPrefix) || strings.ContainsAny(next, "\\\r\n") {
		return dashPrefix
	}
	return next
}

// queueView is the overview's queue section.
type queueView struct {
	Ready, Leased, Dead, Held int64
	OldestReady               string // age of the most overdue ready delivery; "" when none is overdue
	Rates                     []rates
	AutoDisabled              int64 // hooks auto-disabled since the start
	Chart                     chart
}

// chart is a small SVG line chart of attempts per second.
type chart struct {
	Delivered, Failed string // SVG polyline points
	Max               float64
	Span              time.Duration
}

// chartW and chartH are the chart's SVG view box.
const chartW, chartH = 300.0, 60.0

func chartOf(kept []sample) chart {
	if len(kept) < 2 {
		return chart{}
	}
	type point struct{ d, f float64 }
	pts := make([]point, 0, len(kept)-1)
	top := 0.0
	for i := 1; i < len(kept); i++ {
		secs := kept[i].at.Sub(kept[i-1].at).Seconds()
		if secs <= 0 {
			continue
		}
		p := point{max(kept[i].delivered-kept[i-1].delivered, 0) / secs, max(kept[i].failed-kept[i-1].failed, 0) / secs}
		top = max(top, p.d, p.f)
		pts = append(pts, p)
	}
	if len(pts) < 2 {
		return chart{}
	}
	scale := top
	if scale == 0 {
		scale = 1
	}
	var d, f strings.Builder
	for i, p := range pts {
		x := float64(i) * chartW / float64(len(pts)-1)
		fmt.Fprintf(&d, "%.1f,%.1f ", x, chartH-p.d/scale*(chartH-2)-1)
		fmt.Fprintf(&f, "%.1f,%.1f ", x, chartH-p.f/scale*(chartH-2)-1)
	}
	return chart{Delivered: d.String(), Failed: f.String(), Max: top, Span: kept[len(kept)-1].at.Sub(kept[0].at).Round(time.Second)}
}

// hookRow is one hook as the dashboard shows it: never its secret nor its
// URL's path.
type hookRow struct {
	ID, UserID, Name string
	Host             string
	Events           string
	Active           bool
	HasSecret        bool
	DisabledAt       *time.Time // auto-disabled then
	LatestStatus     *int
	LatestAt         *time.Time
	Failures         int
	FailingSince     *time.Time
	Dead             int
}

func rowOf(h hooks.Hook, dead map[string]int) hookRow {
	return hookRow{ID: h.ID, UserID: h.UserID, Name: h.Name, Host: urlHost(h.URL), Events: strings.Join(h.On, ", "),
		Active: h.Active, HasSecret: h.Secret != "", DisabledAt: h.DisabledAt, LatestStatus: h.LatestStatus,
		LatestAt: h.LatestSentAt, Failures: h.Failures, FailingSince: h.FailingSince, Dead: dead[h.ID]}
}

// LatestOK reports whether the latest attempt succeeded.
func (h hookRow) LatestOK() bool {
	return h.LatestStatus != nil && *h.LatestStatus >= 200 && *h.LatestStatus < 300
}

// urlHost is a hook URL's host (and port), nothing else of it.
func urlHost(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return "…"
	}
	return u.Host
}

// Hook orders of the overview; the first is the default.
var hookSorts = []struct{ Key, Label string }{
	{"failing", "failing first"},
	{"dead", "most dead letters"},
	{"owner", "owner"},
	{"recent", "latest attempt"},
}

// sortHooks orders rows by key. "failing": hooks whose latest attempts
// failed first, the longest failing first, then by dead letters; "dead": by
// dead letters, then failing; "owner": by owner; "recent": newest latest
// attempt first. Ties keep creation order.
func sortHooks(rows []hookRow, key string) {
	byFailing := func(a, b hookRow) int {
		switch {
		case a.FailingSince != nil && b.FailingSince == nil:
			return -1
		case a.FailingSince == nil && b.FailingSince != nil:
			return 1
		case a.FailingSince != nil:
			return a.FailingSince.Compare(*b.FailingSince)
		}
		return 0
	}
	byDead := func(a, b hookRow) int { return cmp.Compare(b.Dead, a.Dead) }
	slices.SortStableFunc(rows, func(a, b hookRow) int {
		switch key {
		case "dead":
			return cmp.Or(byDead(a, b), byFailing(a, b))
		case "owner":
			return cmp.Compare(a.UserID, b.UserID)
		case "recent":
			at := func(h hookRow) time.Time {
				if h.LatestAt == nil {
					return time.Time{}
				}
				return *h.LatestAt
			}
			return at(b).Compare(at(a))
		}
		return cmp.Or(byFailing(a, b), byDead(a, b))
	})
}

// overviewData is the overview page.
type overviewData struct {
	page
	Queue        queueView
	Hooks        []hookRow
	Total        int
	Failing      int
	Inactive     int
	Sort         string
	Sorts        []struct{ Key, Label string }
	More         bool // more hooks than shown
	DisableAfter time.Duration
}

func (a *Admin) overview(w http.ResponseWriter, r *http.Request) {
	now, _ := read(a.opts.Registry, a.opts.Now())
	kept := a.sampler.samples()
	qv := queueView{Ready: int64(now.ready), Leased: int64(now.leased), Dead: int64(now.dead), Held: int64(now.held),
		AutoDisabled: int64(now.disabled), Chart: chartOf(append(kept, now))}
	if now.oldest > 0 {
		qv.OldestReady = (time.Duration(now.oldest * float64(time.Second))).Round(time.Second).String()
	}
	for _, win := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute} {
		if rt := rateOver(kept, now, win); rt.Window > 0 && (len(qv.Rates) == 0 || rt.Window > qv.Rates[len(qv.Rates)-1].Window) {
			qv.Rates = append(qv.Rates, rt)
		}
	}

	all, err := a.opts.Hooks.ListAll()
	if err != nil {
		a.log.Error("admin: dashboard hook listing", "err", err)
		http.Error(w, "listing hooks failed", http.StatusInternalServerError)
		return
	}
	dead := a.opts.Deliveries.DeadLetters()
	rows := make([]hookRow, len(all))
	d := overviewData{page: a.page(r, "oceanhooks"), Queue: qv, Total: len(all), Sorts: hookSorts, DisableAfter: a.opts.DisableAfter}
	for i, h := range all {
		rows[i] = rowOf(h, dead)
		if h.FailingSince != nil {
			d.Failing++
		}
		if !h.Active {
			d.Inactive++
		}
	}
	d.Sort = hookSorts[0].Key
	if s := r.URL.Query().Get("sort"); slices.ContainsFunc(hookSorts, func(o struct{ Key, Label string }) bool { return o.Key == s }) {
		d.Sort = s
	}
	sortHooks(rows, d.Sort)
	if r.URL.Query().Get("all") == "" && len(rows) > hooksShown {
		rows, d.More = rows[:hooksShown], true
	}
	d.Hooks = rows
	a.render(w, http.StatusOK, "overview", d)
}

// attemptRow is one attempt as the hook page shows it.
type attemptRow struct {
	At       time.Time
	Status   int
	Duration time.Duration
	Error    string
	Response string
}

// deliveryRow is one delivery as the hook page shows it.
type deliveryRow struct {
	ID, Type, State string
	CreatedAt       time.Time
	NextAt          *time.Time
	Attempts        []attemptRow // newest first
	Omitted         int
}

// hookData is one hook's page.
type hookData struct {
	page
	Hook         hookRow
	Deliveries   []deliveryRow
	Older        string // the untilId of the next page; "" when none
	Until        string
	DisableAfter time.Duration
}

func (a *Admin) hookPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	h, err := a.opts.Hooks.Get(id)
	if errors.Is(err, hooks.ErrNotFound) {
		p := a.page(r, "No such hook")
		p.Error = "There is no hook with that id."
		a.render(w, http.StatusNotFound, "message", p)
		return
	}
	if err != nil {
		a.log.Error("admin: dashboard hook", "hook", id, "err", err)
		http.Error(w, "reading the hook failed", http.StatusInternalServerError)
		return
	}
	until := r.URL.Query().Get("until")
	ds, err := a.opts.Deliveries.List(r.Context(), h.ID, deliveriesShown+1, until)
	if err != nil {
		a.log.Error("admin: dashboard deliveries", "hook", id, "err", err)
		http.Error(w, "listing deliveries failed", http.StatusInternalServerError)
		return
	}
	d := hookData{page: a.page(r, "Hook "+h.ID), Hook: rowOf(h, a.opts.Deliveries.DeadLetters()), Until: until, DisableAfter: a.opts.DisableAfter}
	if len(ds) > deliveriesShown {
		ds = ds[:deliveriesShown]
		d.Older = ds[len(ds)-1].ID
	}
	for _, dl := range maskAttempts(ds) {
		row := deliveryRow{ID: dl.ID, Type: dl.Type, State: dl.State, CreatedAt: dl.CreatedAt, NextAt: dl.NextAt, Omitted: dl.Omitted}
		for i := len(dl.Attempts) - 1; i >= 0; i-- {
			at := dl.Attempts[i]
			row.Attempts = append(row.Attempts, attemptRow{At: at.At, Status: at.Status, Duration: time.Duration(at.Duration) * time.Millisecond,
				Error: at.Error, Response: excerpt(at.Response)})
		}
		d.Deliveries = append(d.Deliveries, row)
	}
	a.render(w, http.StatusOK, "hook", d)
}

// excerpt shortens a receiver's answer for the page.
func excerpt(s string) string {
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > excerptRunes {
		return string(r[:excerptRunes]) + "…"
	}
	return s
}

// backTo sends the browser back to hook id's page with a notice.
func backTo(w http.ResponseWriter, r *http.Request, id, done string) {
	http.Redirect(w, r, dashPrefix+"hooks/"+url.PathEscape(id)+"?done="+done, http.StatusSeeOther)
}

func (a *Admin) setActive(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	active, err := strconv.ParseBool(r.PostFormValue("active"))
	if err != nil {
		http.Error(w, "active must be true or false", http.StatusBadRequest)
		return
	}
	h, err := a.opts.Hooks.SetActive(id, active)
	if errors.Is(err, hooks.ErrNotFound) {
		http.Error(w, "no such hook", http.StatusNotFound)
		return
	}
	if err != nil {
		a.log.Error("admin: dashboard activate", "hook", id, "err", err)
		http.Error(w, "changing the hook failed", http.StatusInternalServerError)
		return
	}
	a.log.Info("admin: an operator switched a hook", "hook", h.ID, "user", h.UserID, "active", h.Active)
	done := "deactivated"
	if h.Active {
		done = "activated"
	}
	backTo(w, r, h.ID, done)
}

func (a *Admin) redeliver(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	delivery := r.PostFormValue("delivery")
	_, err := a.opts.Deliveries.Redeliver(r.Context(), id, delivery)
	switch {
	case errors.Is(err, webhook.ErrNoSuchDelivery):
		backTo(w, r, id, "missing")
	case err != nil:
		a.log.Error("admin: dashboard redeliver", "hook", id, "err", err)
		http.Error(w, "redelivery failed", http.StatusInternalServerError)
	case delivery == "":
		backTo(w, r, id, "redelivering")
	default:
		backTo(w, r, id, "redelivered")
	}
}

// timeOf takes a time.Time or a *time.Time (nil: zero).
func timeOf(v any) time.Time {
	switch t := v.(type) {
	case time.Time:
		return t
	case *time.Time:
		if t != nil {
			return *t
		}
	}
	return time.Time{}
}

// timestamp writes a time in UTC to the second.
func timestamp(v any) string {
	t := timeOf(v)
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// statusText says what an attempt's status (an int or *int) means: an
// HTTP status, 1 for no answer (network error or timeout), 0 for nothing
// sent.
func statusText(v any) string {
	var n int
	switch s := v.(type) {
	case int:
		n = s
	case *int:
		if s == nil {
			return "–"
		}
		n = *s
	}
	switch n {
	case 0:
		return "not sent"
	case 1:
		return "no answer"
	}
	return strconv.Itoa(n) + " " + http.StatusText(n)
}

// ago writes how long before now t (a time.Time or *time.Time) was, roughly.
func ago(now time.Time, v any) string {
	d := now.Sub(timeOf(v))
	switch {
	case d < 0:
		return "in " + roughly(-d)
	case d < time.Second:
		return "just now"
	}
	return roughly(d) + " ago"
}

func roughly(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}
