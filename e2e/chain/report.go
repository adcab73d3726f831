package chain

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// WriteTable writes the result as an aligned table followed by the counters.
func (r *Result) WriteTable(w io.Writer) error {
	table := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(table, "FILE\tKIND\tMODALITY\tFRAMES\tSOP INSTANCE UID\tSENT\tARRIVED")
	for _, file := range r.Files {
		fmt.Fprintf(table, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			file.File, file.Kind, file.Modality, frames(file.Frames),
			file.SOPInstanceUID, yesNo(file.Sent), yesNo(file.Arrived))
	}
	if err := table.Flush(); err != nil {
		return err
	}

	summary := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(summary)
	fmt.Fprintf(summary, "STOW-RS instances sent\t%d\n", r.StowInstances)
	fmt.Fprintf(summary, "QIDO-RS /instances matches\t%d (all samples found: %s)\n",
		r.QIDOMatches, yesNo(r.QIDOFoundAll))
	fmt.Fprintf(summary, "WADO-RS metadata of %s\t%s\n", r.WADOFile, okFailed(r.WADOMetadata))
	fmt.Fprintf(summary, "WADO-RS retrieve of %s\t%s\n", r.WADOFile, okFailed(r.WADORetrieved))
	fmt.Fprintf(summary, "token requests at the issuer\t%d\n", r.TokenRequests)
	fmt.Fprintf(summary, "distinct tokens at the gate\t%d\n", r.DistinctTokens)
	fmt.Fprintf(summary, "gate requests accepted / rejected / outside its path\t%d / %d / %d\n",
		r.GateAccepted, r.GateRejected, r.GateNotFound)
	return summary.Flush()
}

func frames(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func yesNo(value bool) string {
	if value {
		return "yes"
	}
	return "no"
}

func okFailed(value bool) string {
	if value {
		return "ok"
	}
	return "failed"
}
