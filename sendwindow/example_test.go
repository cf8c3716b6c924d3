package sendwindow_test

import (
	"fmt"
	"time"

	"github.com/campaignd/campaignd/sendwindow"
)

// A night window in Shanghai, asked at noon: closed, it opens at 21:00 and
// closes the next morning.
func ExampleWindow() {
	sh, _ := time.LoadLocation("Asia/Shanghai")
	w, _, err := sendwindow.New("21:00", "08:00", sh)
	if err != nil {
		panic(err)
	}
	noon := time.Date(2026, 12, 8, 12, 0, 0, 0, sh)
	const layout = "2006-01-02 15:04 MST"
	fmt.Println(w.Open(noon), w.NextOpen(noon).Format(layout), "to", w.NextClose(noon).Format(layout))
	// Output: false 2026-12-08 21:00 CST to 2026-12-09 08:00 CST
}
