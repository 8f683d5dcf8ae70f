package collect

// registry lists the built-in Windows collectors, in the order they run and
// report errors. They read the running system (registry, service control
// manager, account database); Config.Root does not apply to them.
func registry() []registration {
	return []registration{
		{"os", func(Config) Collector { return osCollector{} }},
		{"programs", func(Config) Collector { return programsCollector{} }},
		{"users", func(Config) Collector { return winUsersCollector{} }},
		{"services", func(Config) Collector { return servicesCollector{} }},
	}
}

// serviceCollectorName is the collector reporting items of kind service.
const serviceCollectorName = "services"
