package engagelab_test

import (
	"context"
	"fmt"

	"github.com/campaignd/campaignd/provider/engagelab"
	"github.com/campaignd/campaignd/pushsim"
)

func Example() {
	sim, _ := pushsim.Start(pushsim.Config{})
	defer sim.Close()

	c, err := engagelab.New(engagelab.Config{BaseURL: sim.URL(), AppKey: "pushsim", AppSecret: "pushsim-secret"})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := c.UpdateTag(ctx, "vip", []string{"reg-1", "reg-2"}, nil); err != nil {
		panic(err)
	}
	counts, _ := c.TagsCount(ctx, []string{"vip"}, "android")
	fmt.Println(counts["vip"])
	// Output: 2
}
