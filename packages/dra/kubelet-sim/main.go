// kubelet-sim plays the kubelet's side of Dynamic Resource Allocation for the
// vfiokit DRA tests: plugin registration (pluginregistration v1) and the DRA
// v1 node service, through Kubernetes' own generated gRPC clients from
// k8s.io/kubelet, so the wire format the plugin speaks is checked against
// code this project did not write.
//
// It reads one JSON request a line on stdin and answers one JSON line on
// stdout, so a test (or the bench) keeps one process for many calls:
//
//	{"op":"register","registryDir":D,"timeoutMs":N}
//	{"op":"prepare","endpoint":S,"claims":[{"namespace":..,"uid":..,"name":..}]}
//	{"op":"unprepare","endpoint":S,"claims":[...]}
//
// register does what the kubelet's plugin watcher does
// (pkg/kubelet/pluginmanager): find the plugin's socket in the
// plugins_registry directory, GetInfo, check the type and the supported
// versions, and answer NotifyRegistrationStatus.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type claim struct {
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
	Name      string `json:"name"`
}

type request struct {
	Op          string  `json:"op"`
	RegistryDir string  `json:"registryDir"`
	Endpoint    string  `json:"endpoint"`
	Claims      []claim `json:"claims"`
	TimeoutMs   int     `json:"timeoutMs"`
}

type device struct {
	RequestNames []string `json:"requestNames"`
	PoolName     string   `json:"poolName"`
	DeviceName   string   `json:"deviceName"`
	CDIDeviceIDs []string `json:"cdiDeviceIds"`
}

type claimResult struct {
	Devices []device `json:"devices,omitempty"`
	Error   string   `json:"error"`
}

type response struct {
	OK      bool                   `json:"ok"`
	Error   string                 `json:"error,omitempty"`
	Code    string                 `json:"code,omitempty"`
	Info    map[string]any         `json:"info,omitempty"`
	Claims  map[string]claimResult `json:"claims,omitempty"`
	Socket  string                 `json:"socket,omitempty"`
	Elapsed float64                `json:"elapsedMs"`
}

func dial(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func failure(err error) response {
	r := response{OK: false, Error: err.Error()}
	if s, ok := status.FromError(err); ok {
		r.Code = s.Code().String()
		r.Error = s.Message()
	}
	return r
}

func register(ctx context.Context, req request) response {
	// The kubelet watches the directory (fsnotify); polling is the same for a test.
	var socket string
	for socket == "" {
		entries, _ := os.ReadDir(req.RegistryDir)
		for _, e := range entries {
			if e.Type()&os.ModeSocket != 0 {
				socket = filepath.Join(req.RegistryDir, e.Name())
				break
			}
		}
		if socket != "" {
			break
		}
		select {
		case <-ctx.Done():
			return failure(fmt.Errorf("no plugin socket appeared in %s", req.RegistryDir))
		case <-time.After(50 * time.Millisecond):
		}
	}
	conn, err := dial(socket)
	if err != nil {
		return failure(err)
	}
	defer conn.Close()
	client := registerapi.NewRegistrationClient(conn)
	info, err := client.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		return failure(err)
	}
	var problem string
	switch {
	case info.Type != registerapi.DRAPlugin:
		problem = fmt.Sprintf("plugin type %q is not %q", info.Type, registerapi.DRAPlugin)
	case !slices.Contains(info.SupportedVersions, "v1.DRAPlugin"):
		problem = fmt.Sprintf("supported versions %v lack v1.DRAPlugin", info.SupportedVersions)
	case info.Endpoint == "":
		problem = "empty endpoint"
	}
	if problem == "" {
		if st, err := os.Stat(info.Endpoint); err != nil || st.Mode()&os.ModeSocket == 0 {
			problem = fmt.Sprintf("endpoint %s is not a socket", info.Endpoint)
		}
	}
	if _, err := client.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{
		PluginRegistered: problem == "", Error: problem,
	}); err != nil {
		return failure(err)
	}
	r := response{OK: problem == "", Error: problem, Socket: socket, Info: map[string]any{
		"type": info.Type, "name": info.Name, "endpoint": info.Endpoint,
		"supportedVersions": info.SupportedVersions,
	}}
	return r
}

func toClaims(in []claim) []*drapb.Claim {
	out := make([]*drapb.Claim, 0, len(in))
	for _, c := range in {
		out = append(out, &drapb.Claim{Namespace: c.Namespace, Uid: c.UID, Name: c.Name})
	}
	return out
}

func prepare(ctx context.Context, req request, unprepare bool) response {
	conn, err := dial(req.Endpoint)
	if err != nil {
		return failure(err)
	}
	defer conn.Close()
	client := drapb.NewDRAPluginClient(conn)
	out := map[string]claimResult{}
	if unprepare {
		resp, err := client.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: toClaims(req.Claims)})
		if err != nil {
			return failure(err)
		}
		for uid, c := range resp.Claims {
			out[uid] = claimResult{Error: c.Error}
		}
	} else {
		resp, err := client.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: toClaims(req.Claims)})
		if err != nil {
			return failure(err)
		}
		for uid, c := range resp.Claims {
			r := claimResult{Error: c.Error}
			for _, d := range c.Devices {
				r.Devices = append(r.Devices, device{
					RequestNames: d.RequestNames, PoolName: d.PoolName,
					DeviceName: d.DeviceName, CDIDeviceIDs: d.CdiDeviceIds,
				})
			}
			out[uid] = r
		}
	}
	return response{OK: true, Claims: out}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	enc := json.NewEncoder(os.Stdout)
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		var req request
		var resp response
		start := time.Now()
		if err := json.Unmarshal([]byte(line), &req); err != nil {
			resp = failure(fmt.Errorf("bad request line: %v", err))
		} else {
			timeout := time.Duration(req.TimeoutMs) * time.Millisecond
			if timeout <= 0 {
				timeout = 30 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			switch req.Op {
			case "register":
				resp = register(ctx, req)
			case "prepare":
				resp = prepare(ctx, req, false)
			case "unprepare":
				resp = prepare(ctx, req, true)
			default:
				resp = failure(fmt.Errorf("unknown op %q", req.Op))
			}
			cancel()
		}
		resp.Elapsed = float64(time.Since(start).Microseconds()) / 1000
		if err := enc.Encode(resp); err != nil {
			os.Exit(1)
		}
	}
}
