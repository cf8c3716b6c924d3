package easemob_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/campaignd/campaignd/provider/easemob"
	"github.com/campaignd/campaignd/pushsim"
)

func Example() {
	sim, _ := pushsim.Start(pushsim.Config{})
	defer sim.Close()

	c, err := easemob.New(easemob.Config{
		BaseURL: sim.URL(), Org: "demo", App: "demo",
		ClientID: "pushsim", ClientSecret: "pushsim-secret",
	})
	if err != nil {
		panic(err)
	}
	res, err := c.PushSingle(context.Background(), []string{"alice", "bob"}, easemob.PushRequest{
		PushMessage: json.RawMessage(`{"title":"Sale","content":"50% off"}`),
	})
	if err != nil {
		panic(err)
	}
	for _, r := range res {
		fmt.Println(r.ID, r.PushStatus, r.OK())
	}
	// Output:
	// alice ASYNC_SUCCESS true
	// bob ASYNC_SUCCESS true
}
