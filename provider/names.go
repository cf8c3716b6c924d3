package provider

// Provider names, as the config's apps.<app>.provider and every error,
// metric and log line spell them.
const (
	Easemob   = "easemob"   // Easemob / Agora Chat push REST API
	EngageLab = "engagelab" // EngageLab device API
)

// Names lists the providers campaignd has clients for.
func Names() []string { return []string{Easemob, EngageLab} }
