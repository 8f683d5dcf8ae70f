package collect

import (
	"context"
	"strings"
	"testing"
)

func TestCloudProvider(t *testing.T) {
	for _, tc := range []struct {
		name       string
		d          dmiInfo
		hypervisor bool
		want       string
	}{
		{"aws nitro", dmiInfo{sysVendor: "Amazon EC2", productName: "m5.large", biosVendor: "Amazon EC2"}, true, "aws"},
		{"aws metal", dmiInfo{sysVendor: "Amazon EC2", productName: "i3.metal"}, false, "aws"},
		{"aws xen", dmiInfo{sysVendor: "Xen", productName: "HVM domU", biosVersion: "4.11.amazon"}, true, "aws"},
		{"azure", dmiInfo{sysVendor: "Microsoft Corporation", productName: "Virtual Machine", chassisAssetTag: azureAssetTag}, true, "azure"},
		{"hyper-v", dmiInfo{sysVendor: "Microsoft Corporation", productName: "Virtual Machine", chassisAssetTag: "1234"}, true, "unknown"},
		{"gcp", dmiInfo{sysVendor: "Google", productName: "Google Compute Engine", biosVendor: "Google"}, true, "gcp"},
		{"vmware", dmiInfo{sysVendor: "VMware, Inc.", productName: "VMware7,1"}, true, "vmware"},
		{"qemu", dmiInfo{sysVendor: "QEMU", productName: "Standard PC (Q35 + ICH9, 2009)"}, false, "unknown"},
		{"kvm flag only", dmiInfo{sysVendor: "Red Hat", productName: "OpenStack Compute"}, true, "unknown"},
		{"virtualbox", dmiInfo{sysVendor: "innotek GmbH", productName: "VirtualBox"}, false, "unknown"},
		{"dell", dmiInfo{sysVendor: "Dell Inc.", productName: "PowerEdge R740", biosVendor: "Dell Inc."}, false, "baremetal"},
	} {
		if got := cloudProvider(tc.d, true, tc.hypervisor); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := cloudProvider(dmiInfo{}, false, false); got != "unknown" {
		t.Errorf("no DMI: %q", got)
	}
}

func TestCPUInfoHypervisor(t *testing.T) {
	for in, want := range map[string]bool{
		"processor\t: 0\nflags\t\t: fpu vme de pse tsc msr hypervisor lahf_lm\n\nprocessor\t: 1\nflags\t\t: fpu\n": true,
		"processor\t: 0\nflags\t\t: fpu vme de pse tsc msr lahf_lm\n":                                              false,
		"processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n":                                                       false,
	} {
		if got, err := cpuinfoHypervisor(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("%q: %v, %v", in, got, err)
		}
	}
}

// TestPlatformHostRoot reads the platform facts of a host root: an AWS
// Kubernetes node, then a bare-metal machine, then a root without /sys.
func TestPlatformHostRoot(t *testing.T) {
	root := t.TempDir()
	for name, v := range map[string]string{
		"sys_vendor": "Amazon EC2\n", "product_name": "m6i.xlarge\n", "bios_vendor": "Amazon EC2\n",
		"chassis_asset_tag": "Amazon EC2\n", "product_version": "\n",
	} {
		writeFile(t, root, "/sys/devices/virtual/dmi/id/"+name, v)
	}
	symlink(t, root, "../../devices/virtual/dmi/id", "/sys/class/dmi/id")
	writeFile(t, root, "/var/lib/kubelet/config.yaml", "kind: KubeletConfiguration\n")
	items, err := osCollector{}.Collect(context.Background(), HostFS{Root: root})
	if len(items) != 1 {
		t.Fatalf("%d items, %v", len(items), err)
	}
	f := items[0].GetOs()
	if f.GetCloudProvider() != "aws" || f.GetProductName() != "m6i.xlarge" || f.GetSysVendor() != "Amazon EC2" || !f.GetKubernetes() {
		t.Errorf("AWS node: %v", f)
	}

	root = t.TempDir()
	writeFile(t, root, "/sys/class/dmi/id/sys_vendor", "Supermicro\n")
	writeFile(t, root, "/sys/class/dmi/id/product_name", "SYS-1029P-WTR\n")
	writeFile(t, root, "/proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu vme\n")
	if p := readPlatform(HostFS{Root: root}); p != (platformFacts{cloudProvider: "baremetal", productName: "SYS-1029P-WTR", sysVendor: "Supermicro"}) {
		t.Errorf("bare metal: %+v", p)
	}
	writeFile(t, root, "/proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu vme hypervisor\n")
	if p := readPlatform(HostFS{Root: root}); p.cloudProvider != "unknown" {
		t.Errorf("unknown hypervisor: %+v", p)
	}
	if p := readPlatform(HostFS{Root: t.TempDir()}); p != (platformFacts{cloudProvider: "unknown"}) {
		t.Errorf("empty root: %+v", p)
	}
}
