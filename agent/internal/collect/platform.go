package collect

import (
	"bufio"
	"io"
	"strings"
)

// dmiInfo holds the DMI strings the platform is told from. All of them are
// world-readable, unlike the serial numbers and UUIDs beside them.
type dmiInfo struct {
	sysVendor, productName, productVersion string
	biosVendor, biosVersion                string
	boardVendor, chassisAssetTag           string
}

// azureAssetTag is the chassis asset tag every Azure virtual machine has;
// it tells Azure apart from Hyper-V elsewhere, whose other strings are the
// same.
const azureAssetTag = "7783-7084-3265-9085-8269-3286-77"

// platformFacts are the facts of OSFacts about the machine under the OS.
type platformFacts struct {
	cloudProvider, productName, sysVendor string
	kubernetes                            bool
}

// readPlatform reads the machine's firmware strings, hypervisor signs and
// Kubernetes node files under the root. Everything is best effort: a
// missing file only makes the answer "unknown".
func readPlatform(h HostFS) platformFacts {
	d, haveDMI := readDMI(h)
	hypervisor, _, _ := readHostFile(h, "/proc/cpuinfo", cpuinfoHypervisor)
	if _, xen, _ := h.chase("/sys/hypervisor/type", true, true); xen {
		hypervisor = true
	}
	return platformFacts{
		cloudProvider: cloudProvider(d, haveDMI, hypervisor),
		productName:   d.productName,
		sysVendor:     d.sysVendor,
		kubernetes:    isKubernetesNode(h),
	}
}

// cloudProvider names where the machine runs from its DMI strings: a cloud
// or VMware by their firmware's own names, "baremetal" where firmware data
// exists and nothing hints at a hypervisor, otherwise "unknown".
func cloudProvider(d dmiInfo, haveDMI, hypervisor bool) string {
	has := func(sub string, fields ...string) bool {
		for _, f := range fields {
			if strings.Contains(strings.ToLower(f), sub) {
				return true
			}
		}
		return false
	}
	switch {
	// Nitro instances say "Amazon EC2"; older Xen ones only have "amazon" in
	// their BIOS version ("4.11.amazon"). Bare-metal instances are still AWS.
	case has("amazon", d.sysVendor, d.biosVendor, d.biosVersion, d.productVersion, d.boardVendor):
		return "aws"
	case d.chassisAssetTag == azureAssetTag:
		return "azure"
	case has("google", d.sysVendor, d.productName, d.biosVendor):
		return "gcp"
	case has("vmware", d.sysVendor, d.productName):
		return "vmware"
	case !haveDMI:
		return "unknown"
	case hypervisor || has("qemu", d.sysVendor, d.productName) ||
		has("kvm", d.productName) || has("bochs", d.sysVendor, d.biosVendor) ||
		has("innotek", d.sysVendor) || has("virtualbox", d.productName) ||
		has("xen", d.sysVendor, d.biosVendor) || has("parallels", d.sysVendor) ||
		has("virtual machine", d.productName) || has("openstack", d.sysVendor, d.productName) ||
		has("bhyve", d.biosVendor):
		return "unknown"
	}
	return "baremetal"
}

// cpuinfoHypervisor reports whether /proc/cpuinfo lists the "hypervisor"
// CPU flag, which x86 hypervisors set for their guests.
func cpuinfoHypervisor(r io.Reader) (bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, f := range strings.Fields(value) {
			if f == "hypervisor" {
				return true, nil
			}
		}
		// Every processor lists the same flags.
		return false, nil
	}
	return false, sc.Err()
}

// kubernetesNodePaths are files a Kubernetes node has: the kubelet's
// configuration (kubeadm, EKS, GKE, AKS), k3s's and RKE2's data, and the
// service account a pod is given, for a root that is a pod's own.
var kubernetesNodePaths = []string{
	"/var/lib/kubelet/config.yaml",
	"/var/lib/kubelet/kubeconfig",
	"/etc/kubernetes/kubelet.conf",
	"/etc/kubernetes/kubelet/kubelet-config.json",
	"/var/lib/rancher/k3s",
	"/var/lib/rancher/rke2",
	"/var/run/secrets/kubernetes.io/serviceaccount",
}

// isKubernetesNode reports whether the root is a Kubernetes node's (or a
// pod's).
func isKubernetesNode(h HostFS) bool {
	for _, p := range kubernetesNodePaths {
		if _, exists, _ := h.chase(p, true, true); exists {
			return true
		}
	}
	return false
}
