package collect

// registry lists the built-in Linux collectors, in the order they run and
// report errors.
func registry() []registration {
	return []registration{
		{"os", func(Config) Collector { return osCollector{} }},
		{"dpkg", func(Config) Collector { return dpkgCollector{} }},
		{"rpm", func(Config) Collector { return rpmCollector{} }},
		{"apk", func(Config) Collector { return apkCollector{} }},
		{"users", func(Config) Collector { return usersCollector{} }},
		{"groups", func(Config) Collector { return groupsCollector{} }},
		{"systemd", func(Config) Collector { return newSystemdLiveCollector() }},
		{"files", func(cfg Config) Collector { return newFilesCollector(cfg) }},
		{"ports", func(Config) Collector { return portsCollector{} }},
		{"processes", func(Config) Collector { return processesCollector{} }},
	}
}

// serviceCollectorName is the collector reporting items of kind service.
const serviceCollectorName = "systemd"
