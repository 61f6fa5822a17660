package control

import "time"

// Status is what `fwctl status` shows.
type Status struct {
	Running        bool      `json:"running"`
	PID            int       `json:"pid"`
	Version        string    `json:"version"`
	StartedAt      time.Time `json:"started_at"`
	UptimeSeconds  float64   `json:"uptime_seconds"`
	ConfigPath     string    `json:"config_path"`
	ConfigLoadedAt time.Time `json:"config_loaded_at"`
	// ConfigDigest is rules.Digest of the config in force.
	ConfigDigest string `json:"config_digest"`
	ReloadError  string `json:"reload_error,omitempty"` // the last rejected config, while the old one stays in force
	// Reload is the config reload under way, if any. While one runs, the
	// other keys still describe the config in force: config_digest names
	// the new config only once it is in the kernel.
	Reload       ReloadState `json:"reload"`
	Rules        int         `json:"rules"`
	RulesEnabled int         `json:"rules_enabled"`
	QueueMode    string      `json:"queue_mode"` // "nft queue" or "xt NFQUEUE (nft_compat)"
	// FastPath says whether established flows checked against the lists
	// since they last changed skip them in the kernel (conntrack labels),
	// and if not, why.
	FastPath   string `json:"fast_path"`
	Queues     string `json:"queues"` // e.g. "0-1"
	FailClosed bool   `json:"fail_closed"`
	// Interfaces are the only ones filtered (pfwd --iface); none means
	// all but lo.
	Interfaces  []string       `json:"interfaces,omitempty"`
	Packets     PacketCounts   `json:"packets"`
	Sets        map[string]int `json:"sets"` // nft set name -> entries
	LogRows     LogCounts      `json:"log_rows"`
	RateLimiter LimiterCounts  `json:"rate_limiter"`
	Feeds       []FeedStatus   `json:"feeds"`
}

// PacketCounts are totals since pfwd started.
type PacketCounts struct {
	Seen          uint64 `json:"seen"`
	Allowed       uint64 `json:"allowed"`
	Blocked       uint64 `json:"blocked"`
	KernelBlocked uint64 `json:"kernel_blocked"` // blacklist/intel drops made in the kernel and reported through nflog
	// KernelUnlogged says why the kernel's own drops are not reported
	// (and so not counted or logged), when pfwd could not listen for them.
	KernelUnlogged string `json:"kernel_unlogged,omitempty"`
	VerdictErrors  uint64 `json:"verdict_errors"`
	QueueDrops     uint64 `json:"queue_drops"` // packets the kernel dropped because the queue was full
}

// LogCounts describe the SQLite log writer.
type LogCounts struct {
	Database string `json:"database"` // the file rows go to
	// Fallback is why the configured database could not be opened, when
	// Database is a temporary one pfwd logs to instead.
	Fallback string `json:"fallback,omitempty"`
	// Configured is the database pfwd was given (--db), when Database is
	// a temporary one instead: fwctl, asked to read the configured one,
	// reads Database.
	Configured string `json:"configured,omitempty"`
	Written    uint64 `json:"written"`
	Suppressed uint64 `json:"suppressed"`           // rows beyond the rate cap or buffer, counted per reason instead
	Lost       uint64 `json:"lost"`                 // rows in batches the database refused
	LastError  string `json:"last_error,omitempty"` // why the last batch failed
}

// LimiterCounts describe the rate limiter.
type LimiterCounts struct {
	Tracked  int `json:"tracked"`
	Capacity int `json:"capacity"`
	// KernelHeld is how many sources over the limit the kernel drops
	// itself (the ratelimit sets); KernelDropped how many connection
	// attempts it dropped from them since pfwd started.
	KernelHeld    int    `json:"kernel_held"`
	KernelDropped uint64 `json:"kernel_dropped"`
}

// FeedStatus is one threat feed's state.
type FeedStatus struct {
	Name        string    `json:"name"`
	URL         string    `json:"url"`
	Entries     int       `json:"entries"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	NextFetch   time.Time `json:"next_fetch,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Failures    int       `json:"failures"`
	// FetchingSince is when the fetch under way began, while it runs.
	FetchingSince time.Time `json:"fetching_since,omitzero"`
	// ApplyingSince is when pfwd began putting the feed's new entries
	// into the kernel, while it still is; until then the kernel (and
	// sets) hold the previous ones.
	ApplyingSince time.Time `json:"applying_since,omitzero"`
}

// ReloadState is a config reload under way: reading and checking the
// file, then applying it, which for lists of a million addresses takes
// seconds.
type ReloadState struct {
	InProgress bool      `json:"in_progress"`
	Since      time.Time `json:"since,omitzero"` // when it began
	Why        string    `json:"why,omitempty"`  // what asked for it: "file changed", "SIGHUP", "retry"
}
