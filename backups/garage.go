package backups

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Garage reads Garage's admin API for the report: the bucket's figures
// and the cluster's health. It asks admin API v2 (Garage 2.x) and falls
// back to v1 (Garage 1.x, which has no v2).
type Garage struct {
	Endpoint string // http(s)://host:3903
	Token    string // the admin token
	Client   *http.Client
}

// GarageStatus is what the report shows of Garage.
type GarageStatus struct {
	API               string // "v2" or "v1"
	Health            string // healthy, degraded or unavailable
	ConnectedNodes    int
	KnownNodes        int
	StorageNodes      int
	StorageNodesOK    int
	Partitions        int
	PartitionsQuorum  int
	PartitionsAllOK   int
	Objects           int64
	Bytes             int64
	UnfinishedUploads int64
}

type garageHealth struct {
	Status           string `json:"status"`
	KnownNodes       int    `json:"knownNodes"`
	ConnectedNodes   int    `json:"connectedNodes"`
	StorageNodes     int    `json:"storageNodes"`
	StorageNodesOK   int    `json:"storageNodesOk"`
	Partitions       int    `json:"partitions"`
	PartitionsQuorum int    `json:"partitionsQuorum"`
	PartitionsAllOK  int    `json:"partitionsAllOk"`
}

type garageBucket struct {
	Objects           int64 `json:"objects"`
	Bytes             int64 `json:"bytes"`
	UnfinishedUploads int64 `json:"unfinishedUploads"`
}

// errNoV2 says the server has no admin API v2.
var errNoV2 = fmt.Errorf("no admin API v2")

// Status reads the cluster's health and the bucket's figures.
func (g *Garage) Status(ctx context.Context, bucket string) (*GarageStatus, error) {
	st, err := g.status(ctx, "v2", "/v2/GetClusterHealth", "/v2/GetBucketInfo?globalAlias="+url.QueryEscape(bucket))
	if err == errNoV2 {
		st, err = g.status(ctx, "v1", "/v1/health", "/v1/bucket?globalAlias="+url.QueryEscape(bucket))
	}
	return st, err
}

func (g *Garage) status(ctx context.Context, api, healthPath, bucketPath string) (*GarageStatus, error) {
	var h garageHealth
	if err := g.get(ctx, healthPath, &h); err != nil {
		return nil, err
	}
	var b garageBucket
	if err := g.get(ctx, bucketPath, &b); err != nil {
		return nil, err
	}
	return &GarageStatus{API: api, Health: h.Status, ConnectedNodes: h.ConnectedNodes, KnownNodes: h.KnownNodes,
		StorageNodes: h.StorageNodes, StorageNodesOK: h.StorageNodesOK, Partitions: h.Partitions,
		PartitionsQuorum: h.PartitionsQuorum, PartitionsAllOK: h.PartitionsAllOK,
		Objects: b.Objects, Bytes: b.Bytes, UnfinishedUploads: b.UnfinishedUploads}, nil
}

func (g *Garage) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(g.Endpoint, "/")+path, nil)
	if err != nil {
		return fmt.Errorf("Garage admin API %q: %w", g.Endpoint, err)
	}
	req.Header.Set("Authorization", "Bearer "+g.Token)
	client := g.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("Garage admin API at %s is unreachable: %w", g.Endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("Garage admin API at %s: %w", g.Endpoint, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound && strings.HasPrefix(path, "/v2/") && !strings.Contains(string(body), "Bucket"):
		return errNoV2 // Garage 1.x answers 404 to unknown endpoints
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("Garage admin API at %s refused the token (%s): check garage.admin_token_file", g.Endpoint, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("Garage admin API at %s answered %s to %s: %s", g.Endpoint, resp.Status, path, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("Garage admin API at %s: %s: %w", g.Endpoint, path, err)
	}
	return nil
}
