//go:build !windows

package collect

import "strings"

// dmiDir is where Linux exposes the firmware's DMI (SMBIOS) strings.
const dmiDir = "/sys/class/dmi/id"

// readDMI reads the firmware's DMI strings under the root.
func readDMI(h HostFS) (dmiInfo, bool) { return readSysfsDMI(h) }

// readSysfsDMI reads the DMI strings Linux exposes under /sys.
func readSysfsDMI(h HostFS) (dmiInfo, bool) {
	read := func(name string) string {
		b, err := h.readFileLimit(dmiDir+"/"+name, 256)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(strings.ToValidUTF8(string(b), ""))
	}
	d := dmiInfo{
		sysVendor:       read("sys_vendor"),
		productName:     read("product_name"),
		productVersion:  read("product_version"),
		biosVendor:      read("bios_vendor"),
		biosVersion:     read("bios_version"),
		boardVendor:     read("board_vendor"),
		chassisAssetTag: read("chassis_asset_tag"),
	}
	_, haveDMI, _ := h.chase(dmiDir, true, true)
	return d, haveDMI
}
