package api

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"
)

// web holds the chart page. lightweight-charts is vendored (web/vendor, from
// web/package-lock.json) so the page works offline and the build needs no npm.
//
//go:embed web/index.html web/app.js web/style.css web/vendor/lightweight-charts.standalone.production.js web/vendor/LICENSE web/vendor/NOTICE
var web embed.FS

var webFS = func() fs.FS {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic("BUG: api: embedded web directory missing: " + err.Error())
	}
	return sub
}()

// chartInfo is /klagg/v1/info: what the chart page offers.
type chartInfo struct {
	Market     string   `json:"market"`
	RESTPrefix string   `json:"rest_prefix"`
	WSPath     string   `json:"ws_path"`
	Intervals  []string `json:"intervals"`
	Symbols    []string `json:"symbols"`
}

// serverStatus is /klagg/v1/status: the daemon's Status and the server's own figures.
type serverStatus struct {
	Daemon         *Status `json:"daemon,omitempty"`
	Connections    int     `json:"ws_connections"`
	Subscriptions  int64   `json:"ws_subscriptions"`
	FramesSent     uint64  `json:"ws_frames_sent"`
	Published      int64   `json:"published"`
	ClosedLost     uint64  `json:"closed_lost"`
	UpdatesDropped uint64  `json:"updates_dropped"`
	ServerTime     int64   `json:"server_time"`
}

// serveChart serves the page, its assets and its two JSON endpoints; false
// when path is none of them.
func (s *Server) serveChart(w http.ResponseWriter, r *http.Request, path string) bool {
	switch path {
	case "/klagg/v1/info":
		info := chartInfo{Market: s.cfg.Market, RESTPrefix: strings.TrimSuffix(s.marketPrefix(), "/"), WSPath: "/ws",
			Symbols: s.cfg.Symbols.Load().Names()}
		if !s.spot {
			info.WSPath = "/market/ws"
		}
		for _, iv := range s.cfg.Intervals {
			info.Intervals = append(info.Intervals, iv.Name)
		}
		b, _ := json.Marshal(info)
		writeJSON(w, b)
		return true
	case "/klagg/v1/status":
		st := s.Stats()
		out := serverStatus{Connections: st.Connections, Subscriptions: st.Subscriptions, FramesSent: st.FramesSent,
			Published: st.Published, ClosedLost: st.ClosedLost, UpdatesDropped: st.UpdatesDropped, ServerTime: s.cfg.Clock()}
		if s.cfg.Status != nil {
			d := s.cfg.Status()
			out.Daemon = &d
		}
		b, _ := json.Marshal(out)
		writeJSON(w, b)
		return true
	case "/", "/index.html":
		r2 := *r
		u := *r.URL
		u.Path = "/"
		r2.URL = &u
		http.FileServerFS(webFS).ServeHTTP(w, &r2)
		return true
	case "/app.js", "/style.css", "/vendor/lightweight-charts.standalone.production.js", "/vendor/LICENSE", "/vendor/NOTICE":
		r2 := *r
		u := *r.URL
		u.Path = path
		r2.URL = &u
		http.FileServerFS(webFS).ServeHTTP(w, &r2)
		return true
	}
	return false
}
