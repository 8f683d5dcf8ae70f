package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"

	"github.com/quantumlayer/qinfra/pkg/inventory"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// Shape of a template: a typical server image.
const (
	tmplPackages = 2000
	tmplUsers    = 30
	tmplServices = 200
	tmplFiles    = 100
	// hostVariants is how many template packages each host runs at a
	// different version (a host patched ahead of or behind its image).
	hostVariants = 12
	// hotFile is the watched file every simulated host changes in its
	// deltas; drift (or its proxy) is measured on it.
	hotFile = "/etc/qinfra-loadgen/hot.conf"
)

// distro is the base an image is built from.
type distro struct {
	manager, arch, suffix, platform, version string
}

var distros = []distro{
	{"dpkg", "amd64", "-1~deb12u%d", "debian", "12"},
	{"dpkg", "amd64", "-0ubuntu0.22.04.%d", "ubuntu", "22.04"},
	{"dpkg", "amd64", "-0ubuntu0.24.04.%d", "ubuntu", "24.04"},
	{"rpm", "x86_64", "-%d.el9", "rhel", "9.4"},
	{"apk", "x86_64", "-r%d", "alpine", "3.20"},
}

// Real package stems; names are built from them so 2,000 packages look
// like a distribution (lib*, *-dev, python3-*, *-common ...).
var pkgStems = []string{
	"openssl", "bash", "coreutils", "systemd", "curl", "wget", "zlib", "glibc", "openssh", "sudo",
	"vim", "nano", "less", "grep", "sed", "gawk", "tar", "gzip", "bzip2", "xz", "zstd", "lz4",
	"python3", "perl", "ruby", "nodejs", "golang", "gcc", "make", "cmake", "git", "rsync",
	"nginx", "apache2", "postgresql", "mariadb", "redis", "memcached", "haproxy", "bind9",
	"iproute2", "iptables", "nftables", "net-tools", "dnsutils", "tcpdump", "ethtool", "iputils",
	"procps", "psmisc", "util-linux", "e2fsprogs", "xfsprogs", "lvm2", "mdadm", "parted",
	"libxml2", "libxslt", "libyaml", "libjson", "libpcre", "libffi", "libssl", "libcurl", "libkrb5",
	"libsasl2", "libldap", "libpam", "libselinux", "libaudit", "libcap", "libseccomp", "libsystemd",
	"libudev", "libdbus", "libglib", "libgcrypt", "libgnutls", "libnettle", "libidn2", "libunistring",
	"libtasn1", "libp11", "libsqlite3", "libdb", "libgdbm", "libexpat", "libpng", "libjpeg", "libtiff",
	"libwebp", "libfreetype", "libfontconfig", "libcairo", "libpango", "libharfbuzz", "libicu",
	"ca-certificates", "tzdata", "locales", "debconf", "dpkg", "apt", "dnf", "rpm", "yum",
	"cron", "logrotate", "rsyslog", "auditd", "chrony", "ntp", "snmpd", "postfix", "dovecot",
	"docker", "containerd", "runc", "podman", "kubelet", "kubectl", "helm", "etcd",
	"java", "openjdk", "tomcat", "maven", "gradle", "php", "composer", "lua", "tcl",
	"htop", "iotop", "sysstat", "strace", "ltrace", "gdb", "valgrind", "lsof", "file",
	"unzip", "zip", "p7zip", "jq", "yq", "bc", "dc", "ed", "man-db", "info", "groff",
	"cloud-init", "cloud-utils", "grub2", "dracut", "kmod", "udev", "dbus", "polkit", "acl", "attr",
}

var pkgForms = []string{"%s", "lib%s", "%s-dev", "%s-common", "%s-doc", "python3-%s", "%s-utils", "%s-data", "lib%s-dev", "%s-tools", "golang-%s", "perl-%s", "ruby-%s", "node-%s"}

var baseUsers = []string{"root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news",
	"uucp", "proxy", "www-data", "backup", "list", "irc", "nobody", "systemd-network", "systemd-resolve",
	"messagebus", "sshd", "syslog", "_apt", "chrony", "postfix", "postgres", "redis", "nginx", "ubuntu", "deploy"}

var baseFiles = []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/sudoers",
	"/etc/ssh/sshd_config", "/etc/ssh/ssh_config", "/etc/hosts", "/etc/resolv.conf", "/etc/fstab",
	"/etc/crontab", "/etc/sysctl.conf", "/etc/login.defs", "/etc/pam.d/common-auth", "/etc/pam.d/sshd",
	"/etc/security/limits.conf", "/etc/nginx/nginx.conf", "/etc/rsyslog.conf", "/etc/logrotate.conf",
	"/etc/audit/auditd.conf", "/etc/chrony/chrony.conf", "/etc/systemd/journald.conf", "/etc/os-release"}

// template is one image: sealed items shared by every host built from it.
type template struct {
	id     int
	distro distro
	items  []*commonv1.Item
	// pkgIdx lists the indexes of package items, where hosts vary.
	pkgIdx []int
	// acc is the set hash accumulator of items.
	acc inventory.Accumulator
}

// makeTemplates builds k templates deterministically from seed.
func makeTemplates(k int, seed uint64) ([]*template, error) {
	out := make([]*template, k)
	for i := range out {
		t, err := makeTemplate(i, seed)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

func makeTemplate(id int, seed uint64) (*template, error) {
	r := rand.New(rand.NewPCG(seed, uint64(id)+1))
	d := distros[id%len(distros)]
	t := &template{id: id, distro: d}
	add := func(it *commonv1.Item) error {
		if err := inventory.Seal(it); err != nil {
			return err
		}
		t.acc.Add(inventory.RefOf(it), it.GetHash())
		t.items = append(t.items, it)
		return nil
	}
	// Packages: every (form, stem) pair, shuffled per template, the first
	// tmplPackages taken.
	names := make([]string, 0, len(pkgForms)*len(pkgStems))
	seen := make(map[string]bool, cap(names))
	for _, f := range pkgForms {
		for _, s := range pkgStems {
			// "lib%s" of "curl" is "%s" of "libcurl": keep one.
			if n := fmt.Sprintf(f, s); !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	if len(names) < tmplPackages {
		return nil, fmt.Errorf("only %d package names", len(names))
	}
	for _, n := range names[:tmplPackages] {
		t.pkgIdx = append(t.pkgIdx, len(t.items))
		if err := add(packageItem(d, n, r.IntN(4), r.IntN(30), r.IntN(12), r.IntN(9), r.Int64N(1<<30)+1_600_000_000)); err != nil {
			return nil, err
		}
	}
	for i := 0; i < tmplUsers; i++ {
		name := baseUsers[i%len(baseUsers)]
		uid := uint32(i)
		if i >= 17 {
			uid = uint32(100 + i)
		}
		shell := "/usr/sbin/nologin"
		if i == 0 || i >= 28 {
			shell = "/bin/bash"
		}
		it := &commonv1.Item{Kind: inventory.KindUser, Key: name, Body: &commonv1.Item_User{User: &commonv1.User{
			Name: name, Uid: uid, Gid: uid, Home: "/home/" + name, Shell: shell, PasswordState: "locked"}}}
		if err := add(it); err != nil {
			return nil, err
		}
	}
	for i := 0; i < tmplServices; i++ {
		name := fmt.Sprintf("%s.service", pkgStems[i%len(pkgStems)])
		if i >= len(pkgStems) {
			name = fmt.Sprintf("%s-%d.service", pkgStems[i%len(pkgStems)], i/len(pkgStems))
		}
		state, active := "enabled", "active"
		if r.IntN(4) == 0 {
			state, active = "disabled", "inactive"
		}
		it := &commonv1.Item{Kind: inventory.KindService, Key: name, Body: &commonv1.Item_Service{Service: &commonv1.Service{
			Manager: "systemd", Name: name, UnitFileState: state, ActiveState: active, SubState: "running",
			Path: "/lib/systemd/system/" + name, Description: "Simulated " + name}}}
		if err := add(it); err != nil {
			return nil, err
		}
	}
	for i := 0; i < tmplFiles; i++ {
		path := fmt.Sprintf("/etc/app/conf.d/%03d.conf", i)
		if i < len(baseFiles) {
			path = baseFiles[i]
		}
		if err := add(fileItem(path, fmt.Sprintf("tmpl%d:%d", id, i), 0o644, int64(200+r.IntN(8000)))); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func packageItem(d distro, name string, major, minor, patch, rel int, installed int64) *commonv1.Item {
	up := fmt.Sprintf("%d.%d.%d", major, minor, patch)
	ver := up + fmt.Sprintf(d.suffix, rel)
	return &commonv1.Item{Kind: inventory.KindPackage, Key: d.manager + ":" + name + ":" + d.arch,
		Body: &commonv1.Item_Package{Package: &commonv1.Package{Manager: d.manager, Name: name, Version: ver,
			Arch: d.arch, SourceName: name, SourceVersion: ver, Status: "installed", UpstreamVersion: up,
			InstallTime: installed}}}
}

func fileItem(path, content string, mode uint32, size int64) *commonv1.Item {
	sum := sha256.Sum256([]byte(content))
	return &commonv1.Item{Kind: inventory.KindFile, Key: path, Body: &commonv1.Item_File{File: &commonv1.File{
		Path: path, Type: "file", Sha256: hex.EncodeToString(sum[:]), Mode: mode, Owner: "root", Group: "root",
		Size: size, MtimeUnixNano: 1_700_000_000_000_000_000}}}
}

// hostItems are what makes one host differ from its image: its identity
// files, a few packages at other versions, an extra user and the hot file
// at generation gen.
type hostItems struct {
	// replace maps template item indexes to the host's own item.
	replace map[int]*commonv1.Item
	extra   []*commonv1.Item
}

func makeHostItems(t *template, host int, gen uint64, mode uint32) (*hostItems, error) {
	r := rand.New(rand.NewPCG(uint64(host)+1, uint64(t.id)+7))
	h := &hostItems{replace: make(map[int]*commonv1.Item, hostVariants)}
	for len(h.replace) < hostVariants {
		i := t.pkgIdx[r.IntN(len(t.pkgIdx))]
		p := t.items[i].GetPackage()
		h.replace[i] = packageItem(t.distro, p.GetName(), 9, r.IntN(30), r.IntN(12), r.IntN(9), p.GetInstallTime())
	}
	user := fmt.Sprintf("svc-h%d", host%97)
	h.extra = []*commonv1.Item{
		fileItem("/etc/hostname", fmt.Sprintf("sim-%06d", host), 0o644, 11),
		fileItem("/etc/machine-id", fmt.Sprintf("machine-%d", host), 0o444, 33),
		{Kind: inventory.KindUser, Key: user, Body: &commonv1.Item_User{User: &commonv1.User{
			Name: user, Uid: uint32(2000 + host%97), Gid: 2000, Home: "/home/" + user, Shell: "/bin/bash", PasswordState: "set"}}},
		hotItem(host, gen, mode),
	}
	for _, it := range h.replace {
		if err := inventory.Seal(it); err != nil {
			return nil, err
		}
	}
	for _, it := range h.extra {
		if err := inventory.Seal(it); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Modes of the hot file: hotMode is what the loadgen baseline expects,
// driftMode a chmod that drifts from it.
const (
	hotMode   = 0o640
	driftMode = 0o666
)

// hotItem is the host's hot file at generation gen with the given mode;
// its sha256 changes with every generation.
func hotItem(host int, gen uint64, mode uint32) *commonv1.Item {
	return fileItem(hotFile, fmt.Sprintf("host %d generation %d", host, gen), mode, 64)
}

// fullInventory returns the host's whole item set and its set hash
// accumulator.
func fullInventory(t *template, h *hostItems) ([]*commonv1.Item, inventory.Accumulator) {
	acc := t.acc
	items := make([]*commonv1.Item, 0, len(t.items)+len(h.extra))
	for i, it := range t.items {
		if own, ok := h.replace[i]; ok {
			acc.Remove(inventory.RefOf(it), it.GetHash())
			acc.Add(inventory.RefOf(own), own.GetHash())
			it = own
		}
		items = append(items, it)
	}
	for _, it := range h.extra {
		acc.Add(inventory.RefOf(it), it.GetHash())
		items = append(items, it)
	}
	return items, acc
}
