package collect

import (
	"strings"

	winreg "golang.org/x/sys/windows/registry"
)

// biosKey holds the SMBIOS strings Windows read at boot.
const biosKey = `HARDWARE\DESCRIPTION\System\BIOS`

// readDMI reads the firmware's DMI strings from the registry. Windows does
// not keep the chassis asset tag there, so an Azure machine is told by its
// other strings only as far as they tell (Hyper-V's are the same).
func readDMI(HostFS) (dmiInfo, bool) {
	k, err := winreg.OpenKey(winreg.LOCAL_MACHINE, biosKey, winreg.QUERY_VALUE)
	if err != nil {
		return dmiInfo{}, false
	}
	defer k.Close()
	get := func(name string) string {
		s, _, err := k.GetStringValue(name)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(s)
	}
	return dmiInfo{
		sysVendor:      get("SystemManufacturer"),
		productName:    get("SystemProductName"),
		productVersion: get("SystemVersion"),
		biosVendor:     get("BIOSVendor"),
		biosVersion:    get("BIOSVersion"),
		boardVendor:    get("BaseBoardManufacturer"),
	}, true
}
