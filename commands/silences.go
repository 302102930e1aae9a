package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/vigie/vigie/render"
)

// Silences lists the silences in force.
type Silences struct{ Book IncidentBook }

// Spec implements Handler.
func (s *Silences) Spec() Spec {
	return Spec{Name: "silences", Access: Read, Summary: "list the silences in force"}
}

// Run implements Handler.
func (s *Silences) Run(ctx context.Context, _ *Request) (render.Node, error) {
	active, err := s.Book.Silences(ctx)
	if err != nil {
		return render.Node{}, err
	}
	if len(active) == 0 {
		return render.Text("No silence in force."), nil
	}
	items := make([]render.Node, len(active))
	for i, sil := range active {
		what := strings.ReplaceAll(sil.Matchers, ",", ", ")
		until := "until resolved"
		if sil.IncidentID != 0 {
			what = fmt.Sprintf("incident #%d", sil.IncidentID)
		}
		if !sil.ExpiresAt.IsZero() {
			until = "until " + sil.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC")
		}
		line := fmt.Sprintf("#%d %s · %s · by %s", sil.ID, what, until, sil.CreatedBy)
		if sil.Reason != "" && sil.IncidentID == 0 {
			line += " · " + sil.Reason
		}
		items[i] = render.Text(line)
	}
	return render.Group(render.Heading(render.Text(fmt.Sprintf("%d silence(s)", len(active)))), render.List(items...)), nil
}
