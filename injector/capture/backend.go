package capture

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Backend is the iptables implementation the rules are written with. The kernel keeps
// legacy (x_tables) and nft rules apart, and both are evaluated: rules must go through the
// backend the rest of the node uses, or they are hard to see and to remove.
type Backend string

const (
	// Auto picks a backend with Detect.
	Auto   Backend = "auto"
	NFT    Backend = "nft"
	Legacy Backend = "legacy"
)

// ParseBackend reads a --backend value.
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(s); b {
	case Auto, NFT, Legacy:
		return b, nil
	}
	return "", fmt.Errorf("backend %q is not one of auto, nft, legacy", s)
}

// SaveCommand and RestoreCommand are the backend's iptables-save and iptables-restore.
func (b Backend) SaveCommand() string    { return "iptables-" + string(b) + "-save" }
func (b Backend) RestoreCommand() string { return "iptables-" + string(b) + "-restore" }

// Detect chooses the backend the way Kubernetes' iptables-wrapper does: the one that
// already holds rules in this network namespace (a CNI plugin's, or an earlier run's), the
// one with more when both do; in a namespace with no rules at all, the mode of the
// `iptables` on PATH ("iptables v1.8.9 (nf_tables)" or "(legacy)"), which is what the image
// was built to match the node with.
func Detect(ctx context.Context) (Backend, error) {
	var counts [2]int
	var available []Backend
	for i, b := range []Backend{NFT, Legacy} {
		out, err := run(ctx, nil, b.SaveCommand())
		if err != nil {
			continue
		}
		available = append(available, b)
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "-A ") {
				counts[i]++
			}
		}
	}
	switch {
	case len(available) == 0:
		return "", fmt.Errorf("capture: neither %s nor %s works (is iptables installed?)", NFT.SaveCommand(), Legacy.SaveCommand())
	case len(available) == 1:
		return available[0], nil
	case counts[0] > counts[1]:
		return NFT, nil
	case counts[1] > counts[0]:
		return Legacy, nil
	}
	out, err := run(ctx, nil, "iptables", "--version")
	if err != nil {
		return "", fmt.Errorf("capture: no rules in either backend and `iptables --version` failed: %w", err)
	}
	if strings.Contains(string(out), "legacy") {
		return Legacy, nil
	}
	return NFT, nil
}

// Save is the nat table as the backend's iptables-save prints it.
func Save(ctx context.Context, b Backend) (string, error) {
	out, err := run(ctx, nil, b.SaveCommand(), "-t", "nat")
	if err != nil {
		return "", fmt.Errorf("capture: reading the nat table: %w", err)
	}
	return string(out), nil
}

// Apply makes the nat table hold Weft's rules for c, through backend b (not Auto), and
// returns the iptables-restore input it applied.
func Apply(ctx context.Context, b Backend, c Config) (string, error) {
	saved, err := Save(ctx, b)
	if err != nil {
		return "", err
	}
	input, err := Restore(c, saved)
	if err != nil {
		return "", err
	}
	if _, err := run(ctx, []byte(input), b.RestoreCommand(), "--noflush", "--wait"); err != nil {
		return input, fmt.Errorf("capture: applying the rules: %w", err)
	}
	return input, nil
}

// Uninstall removes Weft's rules through backend b and returns the input it applied ("" when
// there was nothing of Weft's).
func Uninstall(ctx context.Context, b Backend) (string, error) {
	saved, err := Save(ctx, b)
	if err != nil {
		return "", err
	}
	input := Remove(saved)
	if input == "" {
		return "", nil
	}
	if _, err := run(ctx, []byte(input), b.RestoreCommand(), "--noflush", "--wait"); err != nil {
		return input, fmt.Errorf("capture: removing the rules: %w", err)
	}
	return input, nil
}

func run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
