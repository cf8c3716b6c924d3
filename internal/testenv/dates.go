package testenv

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// DateShiftEnv names the variable that moves every fixed test date taken
// from Date by a whole number of weeks (negative: back), so that weekday
// and time of day stay as the test wrote them. `make test` runs the tests
// whose fake clocks meet a wall-clock reader (Redis, asynq's Inspector, a
// store on the real clock) with the dates a year back and a year ahead: a
// test that passes only while the real date is near its fixed one fails
// there on any day, not on the day the calendar catches up with it.
const DateShiftEnv = "CAMPAIGND_TEST_DATE_SHIFT_WEEKS"

// DateShift is the shift DateShiftEnv asks for (0 when it is unset).
func DateShift() (time.Duration, error) {
	v := os.Getenv(DateShiftEnv)
	if v == "" {
		return 0, nil
	}
	weeks, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("testenv: %s=%q: want a whole number of weeks: %w", DateShiftEnv, v, err)
	}
	return time.Duration(weeks) * 7 * 24 * time.Hour, nil
}

// Date is time.Date in UTC, moved by DateShift. Tests whose fake clock
// meets a reader of the wall clock take their fixed dates, and the
// expectations made from them, from here.
func Date(year int, month time.Month, day, hour, min, sec, nsec int) time.Time {
	d, err := DateShift()
	if err != nil {
		panic(err) // a mistyped variable must not pass as "no shift"
	}
	return time.Date(year, month, day, hour, min, sec, nsec, time.UTC).Add(d)
}
