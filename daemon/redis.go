package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/config"
)

// redisSetup is the one place Redis clients are built from the config, a
// URL or Sentinel, so that the store, the limiter, asynq and asynqmon all
// reach the same server the same way.
type redisSetup struct {
	cfg config.Redis
}

// tune sets what campaignd wants of every go-redis client.
type tune func(*redis.UniversalOptions)

// client builds a go-redis client (a Sentinel-aware one for the Sentinel
// form) with tune applied.
func (r redisSetup) client(t tune) (*redis.Client, error) {
	if sn := r.cfg.Sentinel; sn != nil {
		o := &redis.UniversalOptions{
			MasterName: sn.Master, Addrs: sn.Addrs,
			SentinelUsername: sn.Username, SentinelPassword: sn.Password,
			Username: r.cfg.Username, Password: r.cfg.Password, DB: r.cfg.DB,
		}
		if r.cfg.TLS {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		t(o)
		return redis.NewFailoverClient(o.Failover()), nil
	}
	po, err := redis.ParseURL(r.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	o := &redis.UniversalOptions{Addrs: []string{po.Addr}, Username: po.Username, Password: po.Password, DB: po.DB, TLSConfig: po.TLSConfig}
	t(o)
	c := redis.NewClient(o.Simple())
	return c, nil
}

// asynq returns asynq's connection options for the same Redis.
func (r redisSetup) asynq(poolSize int) (asynq.RedisConnOpt, error) {
	if sn := r.cfg.Sentinel; sn != nil {
		o := asynq.RedisFailoverClientOpt{MasterName: sn.Master, SentinelAddrs: sn.Addrs,
			SentinelUsername: sn.Username, SentinelPassword: sn.Password,
			Username: r.cfg.Username, Password: r.cfg.Password, DB: r.cfg.DB, PoolSize: poolSize}
		if r.cfg.TLS {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return o, nil
	}
	o, err := asynq.ParseRedisURI(r.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	return o, nil
}

// where names the Redis for people, without credentials.
func (r redisSetup) where() string {
	if sn := r.cfg.Sentinel; sn != nil {
		return fmt.Sprintf("master %q via sentinels %s", sn.Master, strings.Join(sn.Addrs, ","))
	}
	if o, err := redis.ParseURL(r.cfg.URL); err == nil {
		return o.Addr
	}
	return config.RedactURL(r.cfg.URL)
}

// refuseCluster fails for a Redis Cluster: campaignd's scripts touch
// several keys of a campaign, of an app's limits and of the campaign
// index that share no hash slot, and a cluster refuses them (CROSSSLOT).
// Sentinel is the supported high-availability form (docs/OPERATIONS.md).
func refuseCluster(ctx context.Context, c *redis.Client, where string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "cluster").Result()
	if err != nil {
		return fmt.Errorf("redis at %s: INFO cluster: %w", where, err)
	}
	if strings.Contains(info, "cluster_enabled:1") {
		return fmt.Errorf("redis at %s is a Redis Cluster, which campaignd does not support: its scripts touch keys in several hash slots (CROSSSLOT); use Redis Sentinel for high availability (redis.sentinel, docs/OPERATIONS.md)", where)
	}
	return nil
}
