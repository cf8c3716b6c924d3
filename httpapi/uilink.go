package httpapi

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

// campaignsLink is put on every page of the asynq web UI: a way to the
// campaigns page, which asynqmon has no place for.
const campaignsLink = `<a href="/campaigns/" style="position:fixed;right:16px;bottom:16px;z-index:2000;` +
	`padding:8px 14px;border-radius:18px;background:#1565c0;color:#fff;font:500 14px sans-serif;` +
	`text-decoration:none;box-shadow:0 2px 6px rgba(0,0,0,.3)">Campaigns</a>`

// linkCampaigns adds campaignsLink to the HTML pages next serves (its API
// answers and assets pass through untouched).
func linkCampaigns(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || strings.Contains(r.URL.Path, "/api/") || strings.Contains(r.URL.Path, "/static/") {
			next.ServeHTTP(w, r)
			return
		}
		r.Header.Del("Accept-Encoding") // the page is small; it is rewritten uncompressed
		bw := &bufferedWriter{header: http.Header{}}
		next.ServeHTTP(bw, r)
		body := bw.buf.Bytes()
		ct := bw.header.Get("Content-Type")
		if ct == "" && len(body) > 0 {
			ct = http.DetectContentType(body) // as the server would have
			bw.header.Set("Content-Type", ct)
		}
		if strings.HasPrefix(ct, "text/html") {
			if i := bytes.LastIndex(body, []byte("</body>")); i >= 0 {
				body = append(append(append([]byte{}, body[:i]...), campaignsLink...), body[i:]...)
			}
		}
		for k, v := range bw.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if bw.status == 0 {
			bw.status = http.StatusOK
		}
		w.WriteHeader(bw.status)
		_, _ = w.Write(body)
	})
}

type bufferedWriter struct {
	header http.Header
	status int
	buf    bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.buf.Write(p)
}
