package collect

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
)

// uninstall builds an Uninstall entry from "Name=value" pairs.
func uninstall(arch, subkey string, kv ...string) uninstallEntry {
	e := uninstallEntry{arch: arch, subkey: subkey, values: map[string]string{}}
	for _, p := range kv {
		k, v, _ := strings.Cut(p, "=")
		e.values[k] = v
	}
	return e
}

func TestWindowsPrograms(t *testing.T) {
	const vcGUID = "{5af95fd8-a22e-458f-acee-c61bd787178e}"
	entries := []uninstallEntry{
		// The 64-bit view.
		uninstall("x64", "7-Zip", "DisplayName=7-Zip 23.01 (x64)", "DisplayVersion=23.01", "Publisher=Igor Pavlov"),
		uninstall("x64", "Google Chrome", "DisplayName=Google Chrome", "DisplayVersion=120.0.6099.217", "Publisher=Google LLC", "InstallDate=20240115"),
		uninstall("x64", "{A1B2}", "DisplayName=Microsoft Visual C++ 2022 X64 Minimum Runtime - 14.38.33130", "DisplayVersion=14.38.33130", "SystemComponent=1"),
		uninstall("x64", "AddressBook"), // no DisplayName: not a program
		uninstall("x64", "KB5034441", "DisplayName=Security Update for Agent (KB5034441)", "ParentKeyName=OperationsManagerAgent"),
		uninstall("x64", "{NODE18}", "DisplayName=Node.js", "DisplayVersion=18.19.0", "Publisher=Node.js Foundation", "InstallDate=2024-01-10"),
		uninstall("x64", "{NODE20}", "DisplayName=Node.js", "DisplayVersion=20.11.0", "Publisher=Node.js Foundation", "InstallDate=1/15/2024"),
		uninstall("x64", "{SHARED}", "DisplayName=Shared Key Tool", "DisplayVersion=1.0", "SystemComponent=0"),
		// An MSI and its bootstrapper entry: one program.
		uninstall("x64", vcGUID, "DisplayName=Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.38.33130", "DisplayVersion=14.38.33130.0", "Publisher=Microsoft Corporation"),
		uninstall("x64", "{B00T}", "DisplayName=Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.38.33130", "DisplayVersion=14.38.33130.0", "Publisher=Microsoft Corporation"),
		// WOW6432Node.
		uninstall("x86", "Notepad++", "DisplayName=Notepad++ (32-bit x86)", "DisplayVersion=8.6.2", "Publisher=Notepad++ Team", "InstallDate=20231231"),
		uninstall("x86", "7-Zip", "DisplayName=7-Zip 23.01", "DisplayVersion=23.01", "Publisher=Igor Pavlov"),
		uninstall("x86", "{shared}", "DisplayName=Shared Key Tool", "DisplayVersion=1.0"), // the same key seen in both views
	}
	items, err := windowsPrograms(entries)
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	var got []string
	for _, it := range items {
		p := it.GetPackage()
		if p.GetManager() != "windows" || p.GetStatus() != "installed" || p.GetSourceName() != p.GetName() || p.GetSourceVersion() != p.GetVersion() {
			t.Errorf("%s: %v", it.GetKey(), p)
		}
		if Owner(inventory.RefOf(it)) != "programs" {
			t.Errorf("Owner(%s) = %q", it.GetKey(), Owner(inventory.RefOf(it)))
		}
		got = append(got, fmt.Sprintf("%s %s %q %d", it.GetKey(), p.GetVersion(), p.GetVendor(), p.GetInstallTime()))
	}
	date := func(y, m, d int) int64 { return time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).Unix() }
	diffSets(t, "programs", lines(strings.Join([]string{
		`windows:7-Zip 23.01 (x64):x64 23.01 "Igor Pavlov" 0`,
		fmt.Sprintf(`windows:Google Chrome:x64 120.0.6099.217 "Google LLC" %d`, date(2024, 1, 15)),
		fmt.Sprintf(`windows:Node.js:x64:18.19.0 18.19.0 "Node.js Foundation" %d`, date(2024, 1, 10)),
		`windows:Node.js:x64:20.11.0 20.11.0 "Node.js Foundation" 0`,
		`windows:Shared Key Tool:x64 1.0 "" 0`,
		`windows:Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.38.33130:x64 14.38.33130.0 "Microsoft Corporation" 0`,
		fmt.Sprintf(`windows:Notepad++ (32-bit x86):x86 8.6.2 "Notepad++ Team" %d`, date(2023, 12, 31)),
		`windows:7-Zip 23.01:x86 23.01 "Igor Pavlov" 0`,
	}, "\n")), lines(strings.Join(got, "\n")))
}

func TestWindowsServices(t *testing.T) {
	items, err := windowsServices([]winService{
		{name: "wuauserv", displayName: "Windows Update", binaryPath: `C:\Windows\system32\svchost.exe -k netsvcs -p`, serviceType: 0x20, startType: winStartDemand, state: 1},
		{name: "BITS", displayName: "Background Intelligent Transfer Service", serviceType: 0x20, startType: winStartAuto, delayedAutoStart: true, state: 4},
		{name: "EventLog", displayName: "Windows Event Log", serviceType: 0x20, startType: winStartAuto, state: 4},
		{name: "RemoteRegistry", serviceType: 0x10, startType: winStartDisabled, state: 1},
		{name: "CDPUserSvc", displayName: "Connected Devices Platform User Service", serviceType: 0x60, startType: winStartAuto, state: 1},
		{name: "CDPUserSvc_3a8b1", displayName: "Connected Devices Platform User Service_3a8b1", serviceType: 0xe0, startType: winStartAuto, state: 4},
		{name: "eventlog", serviceType: 0x20, startType: winStartAuto, state: 4}, // names are case-insensitive
		{name: "odd", serviceType: 0x10, startType: 9, state: 99},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	var got []string
	for _, it := range items {
		s := it.GetService()
		got = append(got, fmt.Sprintf("%s %s %s %s %q", it.GetKey(), s.GetManager(), s.GetUnitFileState(), s.GetActiveState(), s.GetDescription()))
		if Owner(inventory.RefOf(it)) != serviceCollectorName {
			t.Errorf("Owner(%s) = %q", it.GetKey(), Owner(inventory.RefOf(it)))
		}
	}
	diffSets(t, "services", lines(strings.Join([]string{
		`BITS windows auto-delayed running "Background Intelligent Transfer Service"`,
		`CDPUserSvc windows auto stopped "Connected Devices Platform User Service"`,
		`EventLog windows auto running "Windows Event Log"`,
		`RemoteRegistry windows disabled stopped ""`,
		`odd windows unknown unknown ""`,
		`wuauserv windows demand stopped "Windows Update"`,
	}, "\n")), lines(strings.Join(got, "\n")))
}

func TestWindowsUsers(t *testing.T) {
	items, err := windowsUsers([]winUser{
		{name: "Administrator", rid: 500, primaryGroupRID: 513, flags: 0x0201},
		{name: "Guest", rid: 501, primaryGroupRID: 513, flags: 0x0223},
		{name: "DefaultAccount", rid: 503, primaryGroupRID: 513, flags: 0x0222},
		{name: "deploy", fullName: "Deploy User", homeDir: `C:\Users\deploy`, rid: 1001, primaryGroupRID: 513, flags: 0x0201},
		{name: "kiosk", rid: 1002, primaryGroupRID: 513, flags: 0x0221},
		{name: "locked", rid: 1003, primaryGroupRID: 513, flags: 0x0211},
		{name: "DEPLOY", rid: 1001},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	var got []string
	for _, it := range items {
		u := it.GetUser()
		got = append(got, fmt.Sprintf("%s %d %d %q %q %s", it.GetKey(), u.GetUid(), u.GetGid(), u.GetGecos(), u.GetHome(), u.GetPasswordState()))
	}
	diffSets(t, "users", lines(strings.Join([]string{
		`Administrator 500 513 "" "" set`,
		`Guest 501 513 "" "" locked`,
		`DefaultAccount 503 513 "" "" locked`,
		`deploy 1001 513 "Deploy User" "C:\\Users\\deploy" set`,
		`kiosk 1002 513 "" "" empty`,
		`locked 1003 513 "" "" locked`,
	}, "\n")), lines(strings.Join(got, "\n")))
}
