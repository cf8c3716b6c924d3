package pushsim_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// Start a Sim, fetch an Easemob app token, push to two users (one of them
// unknown) and read what the Sim saw.
func Example() {
	srv, err := pushsim.Start(pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 10}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	post := func(path, token, body string) string {
		req, _ := http.NewRequest(http.MethodPost, srv.URL()+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	tok := post("/demo/app/token", "", `{"grant_type":"client_credentials","client_id":"pushsim","client_secret":"pushsim-secret"}`)
	token := strings.Split(strings.Split(tok, `"access_token":"`)[1], `"`)[0]
	post("/demo/app/push/single", token, `{"targets":["alice","invalid-bob"],"pushMessage":{"title":"Sale","content":"-20%"}}`)

	st := srv.Sim().Stats()
	fmt.Println("push_single calls:", st.CallsFor("easemob", "demo/app", provider.GroupPushSingle))
	fmt.Println("pushes:", st.TotalPushes, "violations:", st.Violations)
	fmt.Println("alice got:", len(srv.Sim().Pushes("alice")), "via", srv.Sim().Pushes("alice")[0].Via)
	// Output:
	// push_single calls: 1
	// pushes: 1 violations: 0
	// alice got: 1 via push/single
}

// A Sim is an http.Handler, so it can also be mounted in a test server of
// your own; the inspection API lives under /_sim/.
func ExampleNew() {
	sim := pushsim.New(pushsim.Config{LimitsOff: true})
	rec := httptest.NewRecorder()
	sim.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/_sim/stats", nil))
	fmt.Println(rec.Code, strings.Contains(rec.Body.String(), `"total_calls":0`))
	// Output: 200 true
}
