package intake

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
)

// SubjectForecast is the core NATS request of a forecast (docs/interface.md
// §3.2): a campaign JSON in, the forecast JSON of §7 back. Nothing is
// stored: it is no stream's subject.
const SubjectForecast = "campaigns.forecast"

// HeaderAudienceTargets, on a forecast request, gives the count of the
// campaign's audience made by the caller (campaignctl counts a local
// file), instead of reading the object.
const HeaderAudienceTargets = "Campaignd-Audience-Targets"

// HeaderAudienceZones, with HeaderAudienceTargets, gives a local-time
// campaign's audience count by zone (JSON: zone name → targets; "" for
// the targets without a zone).
const HeaderAudienceZones = "Campaignd-Audience-Zones"

// Forecaster answers a forecast (the daemon's model).
type Forecaster func(ctx context.Context, campaign []byte, given campaigns.Counted) (campaigns.Forecast, error)

// maxForecasts is how many forecasts one process answers at once; more
// wait for a turn.
const maxForecasts = 8

// ForecastTimeout bounds one forecast (an audience of 10 million lines
// is counted in about 4 s, one at a time): an asker has given up by then.
const ForecastTimeout = 30 * time.Second

// ForecastServer answers forecast requests (SubscribeForecasts, then
// Serve).
type ForecastServer struct {
	sub    *nats.Subscription
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// SubscribeForecasts subscribes to forecast requests: every process
// subscribes in one queue group, so each request is answered once. It
// returns once the server has the subscription, so that a process that
// says it is ready answers at once. A request campaignd cannot answer
// (Redis down) gets {"status": "error", "error": "…"}. Serve ends it.
func SubscribeForecasts(nc *nats.Conn, f Forecaster, log zerolog.Logger) (*ForecastServer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &ForecastServer{cancel: cancel}
	sem := make(chan struct{}, maxForecasts)
	sub, err := nc.QueueSubscribe(SubjectForecast, "campaignd", func(msg *nats.Msg) {
		if msg.Reply == "" {
			return // nobody to answer
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		s.wg.Add(1)
		go func() {
			defer func() { <-sem; s.wg.Done() }()
			given := campaigns.NotCounted
			if v := msg.Header.Get(HeaderAudienceTargets); v != "" {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
					given.Targets = n
					given.Zones = campaigns.ParseZoneCounts(msg.Header.Get(HeaderAudienceZones))
				}
			}
			var body []byte
			fctx, cancel := context.WithTimeout(ctx, ForecastTimeout)
			defer cancel()
			fc, err := f(fctx, msg.Data, given)
			if err != nil {
				log.Warn().Err(err).Msg("forecast failed")
				body, _ = json.Marshal(map[string]string{"status": "error", "error": "forecast: " + err.Error()})
			} else {
				body, _ = json.Marshal(fc)
			}
			if err := msg.Respond(body); err != nil {
				log.Warn().Err(err).Msg("forecast answer not sent")
			}
		}()
	})
	if err != nil {
		cancel()
		return nil, err
	}
	if err := nc.Flush(); err != nil { // the server has it once it answers the PING
		_ = sub.Unsubscribe()
		cancel()
		return nil, err
	}
	s.sub = sub
	return s, nil
}

// Serve answers until ctx is done, then unsubscribes and waits for the
// forecasts under way (each bounded by ForecastTimeout).
func (s *ForecastServer) Serve(ctx context.Context) {
	<-ctx.Done()
	_ = s.sub.Unsubscribe()
	s.cancel()
	s.wg.Wait()
}
