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
		tc, err := r.tlsConfig(nil)
		if err != nil {
			return nil, err
		}
		o.TLSConfig = tc
		t(o)
		return redis.NewFailoverClient(o.Failover()), nil
	}
	po, err := redis.ParseURL(r.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	tc, err := r.tlsConfig(po.TLSConfig)
	if err != nil {
		return nil, err
	}
	o := &redis.UniversalOptions{Addrs: []string{po.Addr}, Username: po.Username, Password: po.Password, DB: po.DB, TLSConfig: tc}
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
		tc, err := r.tlsConfig(nil)
		if err != nil {
			return nil, err
		}
		o.TLSConfig = tc
		return o, nil
	}
	o, err := asynq.ParseRedisURI(r.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	if co, ok := o.(asynq.RedisClientOpt); ok && co.TLSConfig != nil {
		if co.TLSConfig, err = r.tlsConfig(co.TLSConfig); err != nil {
			return nil, err
		}
		return co, nil
	}
	return o, nil
}

// tlsConfig is the TLS of the connections: nil without TLS; otherwise
// redis.tls's files (a private CA, a client certificate), or the system's
// roots. fromURL is what a rediss:// URL asks for (its ServerName, the
// URL's host, stays unless redis.tls.server_name is set).
func (r redisSetup) tlsConfig(fromURL *tls.Config) (*tls.Config, error) {
	t := r.cfg.TLS
	if fromURL == nil && !t.Enabled {
		return nil, nil
	}
	tc, err := t.Files().Config()
	if err != nil {
		return nil, fmt.Errorf("redis.tls.%w", err)
	}
	if tc.ServerName == "" && fromURL != nil {
		tc.ServerName = fromURL.ServerName
	}
	return tc, nil
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
