package collect

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"golang.org/x/sys/windows"
)

// winUsersCollector reports the local accounts of the machine's account
// database (NetUserEnum), not domain accounts.
type winUsersCollector struct{}

func (winUsersCollector) Name() string { return "users" }

// userInfo3 is USER_INFO_3 of lmaccess.h.
type userInfo3 struct {
	name          *uint16
	password      *uint16
	passwordAge   uint32
	priv          uint32
	homeDir       *uint16
	comment       *uint16
	flags         uint32
	scriptPath    *uint16
	authFlags     uint32
	fullName      *uint16
	usrComment    *uint16
	parms         *uint16
	workstations  *uint16
	lastLogon     uint32
	lastLogoff    uint32
	acctExpires   uint32
	maxStorage    uint32
	unitsPerWeek  uint32
	logonHours    *byte
	badPwCount    uint32
	numLogons     uint32
	logonServer   *uint16
	countryCode   uint32
	codePage      uint32
	userID        uint32
	primaryGroup  uint32
	profile       *uint16
	homeDirDrive  *uint16
	passwdExpired uint32
}

const (
	filterNormalAccount = 0x0002 // FILTER_NORMAL_ACCOUNT
	maxPreferredLength  = 0xFFFFFFFF
)

func (winUsersCollector) Collect(ctx context.Context, _ HostFS) ([]*commonv1.Item, error) {
	var (
		users  []winUser
		resume uint32
	)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var (
			buf         *byte
			read, total uint32
		)
		err := windows.NetUserEnum(nil, 3, filterNormalAccount, &buf, maxPreferredLength, &read, &total, &resume)
		if buf != nil {
			entries := unsafe.Slice((*userInfo3)(unsafe.Pointer(buf)), read)
			for _, e := range entries {
				users = append(users, winUser{
					name:            windows.UTF16PtrToString(e.name),
					fullName:        windows.UTF16PtrToString(e.fullName),
					homeDir:         windows.UTF16PtrToString(e.homeDir),
					rid:             e.userID,
					primaryGroupRID: e.primaryGroup,
					flags:           e.flags,
				})
			}
			windows.NetApiBufferFree(buf)
		}
		if errors.Is(err, windows.ERROR_MORE_DATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("NetUserEnum: %w", err)
		}
		break
	}
	return windowsUsers(users)
}
