package collect

import (
	"context"
	"fmt"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"
)

// servicesCollector reports the Win32 services of the service control
// manager with their start type and state. It asks for read access only,
// which any account has.
type servicesCollector struct{}

func (servicesCollector) Name() string { return "services" }

func (servicesCollector) Collect(ctx context.Context, _ HostFS) ([]*commonv1.Item, error) {
	h, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT|windows.SC_MANAGER_ENUMERATE_SERVICE)
	if err != nil {
		return nil, fmt.Errorf("open service control manager: %w", err)
	}
	m := &mgr.Mgr{Handle: h}
	defer m.Disconnect()
	names, err := m.ListServices()
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	var svcs []winService
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, ok := queryService(h, name)
		if ok {
			svcs = append(svcs, s)
		}
	}
	return windowsServices(svcs)
}

// queryService reads one service's configuration and state; a service
// deleted meanwhile, or one the agent may not query, is skipped.
func queryService(scm windows.Handle, name string) (winService, bool) {
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return winService{}, false
	}
	h, err := windows.OpenService(scm, p, windows.SERVICE_QUERY_CONFIG|windows.SERVICE_QUERY_STATUS)
	if err != nil {
		return winService{}, false
	}
	s := &mgr.Service{Name: name, Handle: h}
	defer s.Close()
	cfg, err := s.Config()
	if err != nil {
		return winService{}, false
	}
	st, err := s.Query()
	if err != nil {
		return winService{}, false
	}
	return winService{
		name:             name,
		displayName:      cfg.DisplayName,
		binaryPath:       cfg.BinaryPathName,
		serviceType:      cfg.ServiceType,
		startType:        cfg.StartType,
		state:            uint32(st.State),
		delayedAutoStart: cfg.DelayedAutoStart,
	}, true
}
