package bench

import (
	"fmt"
	"strconv"
	"strings"

	wgdevice "golang.zx2c4.com/wireguard/device"
)

// ipcListenPort reads a wireguard-go device's UDP port from its UAPI.
func ipcListenPort(dev *wgdevice.Device) (uint16, error) {
	s, err := dev.IpcGet()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			n, err := strconv.ParseUint(v, 10, 16)
			return uint16(n), err
		}
	}
	return 0, fmt.Errorf("device reports no listen_port")
}
