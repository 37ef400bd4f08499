package fakebitbucket

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"unicode/utf8"
)

// Code Insights as both servers enforce it: Cloud's reports and bulk
// annotations (100 a request, 1,000 a report, enums of its OpenAPI) and
// Data Center's (keys of 50, 6 data items, 1,000 annotations a report with
// a request past it refused whole, http(s) links), each with the answers
// the real servers give.

type report struct {
	body        json.RawMessage
	annotations []json.RawMessage
	ids         map[string]bool
}

// Report returns a commit's report under key as last put, and its
// annotations; nil if there is none.
func (s *Server) Report(commit, key string) (json.RawMessage, []json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := s.reports[commit+"\x00"+key]
	if rep == nil {
		return nil, nil
	}
	return rep.body, slices.Clone(rep.annotations)
}

// datum is one data element of a report, on either server.
type datum struct {
	Title string
	Type  string
	Value any
}

func validData(data []datum) bool {
	for _, d := range data {
		if d.Title == "" || !oneOf(d.Type, "BOOLEAN", "DATE", "DURATION", "LINK", "NUMBER", "PERCENTAGE", "TEXT") {
			return false
		}
	}
	return true
}

// putReport creates or replaces a report. A PUT keeps the annotations, on
// both servers: only a DELETE clears them. The caller holds s.mu.
func (s *Server) putReport(id string, body []byte) {
	rep := s.reports[id]
	if rep == nil {
		rep = &report{ids: map[string]bool{}}
		s.reports[id] = rep
	}
	rep.body = body
}

func chars(s string) int { return utf8.RuneCountInString(s) }

func oneOf(v string, allowed ...string) bool { return slices.Contains(allowed, v) }

func cloudError(w http.ResponseWriter, code int, msg string) {
	m, _ := json.Marshal(msg)
	writeJSON(w, code, `{"type":"error","error":{"message":`+string(m)+`}}`)
}

// cloudReports serves repositories/{ws}/{slug}/commit/{sha}/reports/{key}[/annotations].
func (s *Server) cloudReports(w http.ResponseWriter, r *http.Request, commit, key string, annotations bool, body []byte) {
	id := commit + "\x00" + key
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reports == nil {
		s.reports = map[string]*report{}
	}
	switch {
	case !annotations && r.Method == http.MethodDelete:
		if s.reports[id] == nil {
			cloudError(w, http.StatusNotFound, "Report not found")
			return
		}
		delete(s.reports, id)
		w.WriteHeader(http.StatusNoContent)
	case !annotations && r.Method == http.MethodPut:
		var rep struct {
			Title, Details, ReportType, Result, Link, LogoURL string
			Data                                              []datum
		}
		var raw map[string]json.RawMessage
		if json.Unmarshal(body, &raw) != nil || json.Unmarshal(body, &rep) != nil {
			cloudError(w, http.StatusBadRequest, "Bad request")
			return
		}
		var typ, link string
		_ = json.Unmarshal(raw["report_type"], &typ)
		_ = json.Unmarshal(raw["link"], &link)
		switch {
		case rep.Title == "":
			cloudError(w, http.StatusBadRequest, "title: This field is required.")
		case rep.Details == "":
			cloudError(w, http.StatusBadRequest, "details: This field is required.")
		case !oneOf(typ, "SECURITY", "COVERAGE", "TEST", "BUG"):
			cloudError(w, http.StatusBadRequest, "report_type: Select a valid choice.")
		case rep.Result != "" && !oneOf(rep.Result, "PASSED", "FAILED", "PENDING"):
			cloudError(w, http.StatusBadRequest, "result: Select a valid choice.")
		case link != "" && !validURL(link):
			cloudError(w, http.StatusBadRequest, "link: Enter a valid URL.")
		case len(rep.Data) > 10:
			cloudError(w, http.StatusBadRequest, "data: A report can hold at most 10 data elements.")
		case !validData(rep.Data):
			cloudError(w, http.StatusBadRequest, "data: each element needs a title and a valid type.")
		default:
			s.putReport(id, body)
			writeJSON(w, http.StatusOK, string(body))
		}
	case annotations && r.Method == http.MethodPost:
		rep := s.reports[id]
		if rep == nil {
			cloudError(w, http.StatusNotFound, "Report not found")
			return
		}
		var list []json.RawMessage
		if json.Unmarshal(body, &list) != nil {
			cloudError(w, http.StatusBadRequest, "Bad request: expected a list of annotations")
			return
		}
		if len(list) > 100 {
			writeJSON(w, http.StatusBadRequest, `{"code":400,"message":"Bulk upload supports a maximum of /100 annotations."}`)
			return
		}
		if len(rep.annotations)+len(list) > 1000 {
			cloudError(w, http.StatusBadRequest, "A report can hold at most 1000 annotations.")
			return
		}
		seen := map[string]bool{}
		for i, raw := range list {
			var a struct {
				ExternalID     string `json:"external_id"`
				AnnotationType string `json:"annotation_type"`
				Summary        string
				Severity       string
				Result         string
				Line           *int
			}
			if json.Unmarshal(raw, &a) != nil {
				cloudError(w, http.StatusBadRequest, fmt.Sprintf("annotation %d: Bad request", i))
				return
			}
			var problem string
			switch {
			case a.ExternalID == "":
				problem = "external_id: This field is required."
			case seen[a.ExternalID] || rep.ids[a.ExternalID]:
				problem = "external_id: An annotation with this external id already exists."
			case !oneOf(a.AnnotationType, "VULNERABILITY", "CODE_SMELL", "BUG"):
				problem = "annotation_type: Select a valid choice."
			case a.Summary == "":
				problem = "summary: This field is required."
			case chars(a.Summary) > 450:
				problem = "summary: Ensure this value has at most 450 characters."
			case a.Severity != "" && !oneOf(a.Severity, "CRITICAL", "HIGH", "MEDIUM", "LOW"):
				problem = "severity: Select a valid choice."
			case a.Result != "" && !oneOf(a.Result, "PASSED", "FAILED", "SKIPPED", "IGNORED"):
				problem = "result: Select a valid choice."
			case a.Line != nil && *a.Line < 1:
				problem = "line: Ensure this value is greater than or equal to 1."
			}
			if problem != "" {
				cloudError(w, http.StatusBadRequest, fmt.Sprintf("annotation %d: %s", i, problem))
				return
			}
			seen[a.ExternalID] = true
		}
		for id := range seen {
			rep.ids[id] = true
		}
		rep.annotations = append(rep.annotations, list...)
		writeJSON(w, http.StatusOK, string(body))
	default:
		cloudError(w, http.StatusMethodNotAllowed, "Method not allowed")
	}
}

func dataCenterError(w http.ResponseWriter, code int, msg string) {
	m, _ := json.Marshal(msg)
	writeJSON(w, code, `{"errors":[{"context":null,"message":`+string(m)+`,"exceptionName":null}]}`)
}

// dataCenterReports serves insights/latest/projects/{p}/repos/{r}/commits/{sha}/reports/{key}[/annotations].
func (s *Server) dataCenterReports(w http.ResponseWriter, r *http.Request, commit, key string, annotations bool, body []byte) {
	id := commit + "\x00" + key
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reports == nil {
		s.reports = map[string]*report{}
	}
	switch {
	case !annotations && r.Method == http.MethodDelete:
		if s.reports[id] == nil {
			noSuch(w, "No report with key '"+key+"' exists for commit "+commit+".", "insights.NoSuchReportException")
			return
		}
		delete(s.reports, id)
		w.WriteHeader(http.StatusNoContent)
	case !annotations && r.Method == http.MethodPut:
		var rep struct {
			Title, Details, Result, Reporter, Link string
			Data                                   *[]datum
		}
		switch {
		case chars(key) > 50:
			dataCenterError(w, http.StatusBadRequest, "The field 'key' cannot be more than 50 characters long")
		case json.Unmarshal(body, &rep) != nil:
			dataCenterError(w, http.StatusBadRequest, "The request body is not valid JSON.")
		case rep.Title == "":
			dataCenterError(w, http.StatusBadRequest, "The field 'title' is required")
		case chars(rep.Title) > 450:
			dataCenterError(w, http.StatusBadRequest, "The field 'title' cannot be more than 450 characters long")
		case chars(rep.Details) > 2000:
			dataCenterError(w, http.StatusBadRequest, "The field 'details' cannot be more than 2000 characters long")
		case chars(rep.Reporter) > 450:
			dataCenterError(w, http.StatusBadRequest, "The field 'reporter' cannot be more than 450 characters long")
		case rep.Result != "" && !oneOf(rep.Result, "PASS", "FAIL"):
			dataCenterError(w, http.StatusBadRequest, "The field 'result' must be one of PASS, FAIL")
		case rep.Link != "" && !validURL(rep.Link):
			dataCenterError(w, http.StatusBadRequest, "The field 'link' must be a valid HTTP or HTTPS URL")
		case rep.Data == nil:
			dataCenterError(w, http.StatusBadRequest, "The field 'data' is required")
		case len(*rep.Data) > 6:
			dataCenterError(w, http.StatusBadRequest, "The field 'data' cannot have more than 6 elements")
		case !validData(*rep.Data):
			dataCenterError(w, http.StatusBadRequest, "Each data element needs a title and a valid type")
		default:
			s.putReport(id, body)
			writeJSON(w, http.StatusOK, string(body))
		}
	case annotations && r.Method == http.MethodPost:
		rep := s.reports[id]
		if rep == nil {
			noSuch(w, "No report with key '"+key+"' exists for commit "+commit+".", "insights.NoSuchReportException")
			return
		}
		var list struct {
			Annotations []json.RawMessage `json:"annotations"`
		}
		if json.Unmarshal(body, &list) != nil {
			dataCenterError(w, http.StatusBadRequest, "The request body is not valid JSON.")
			return
		}
		if len(rep.annotations)+len(list.Annotations) > 1000 {
			dataCenterError(w, http.StatusBadRequest, fmt.Sprintf("Adding %d annotations would exceed the limit of 1000 annotations for the report; none were added",
				len(list.Annotations)))
			return
		}
		for i, raw := range list.Annotations {
			var a struct {
				ExternalID, Message, Severity, Type, Path string
				Line                                      *int
			}
			if json.Unmarshal(raw, &a) != nil {
				dataCenterError(w, http.StatusBadRequest, fmt.Sprintf("annotation %d is not valid", i))
				return
			}
			var problem string
			switch {
			case a.Message == "":
				problem = "The field 'message' is required"
			case chars(a.Message) > 2000:
				problem = "The field 'message' cannot be more than 2000 characters long"
			case !oneOf(a.Severity, "LOW", "MEDIUM", "HIGH"):
				problem = "The field 'severity' must be one of LOW, MEDIUM, HIGH"
			case a.Type != "" && !oneOf(a.Type, "VULNERABILITY", "CODE_SMELL", "BUG"):
				problem = "The field 'type' must be one of VULNERABILITY, CODE_SMELL, BUG"
			case a.Line != nil && *a.Line < 0:
				problem = "The field 'line' cannot be negative"
			case chars(a.ExternalID) >= 450:
				problem = "The field 'externalId' must be shorter than 450 characters"
			}
			if problem != "" {
				dataCenterError(w, http.StatusBadRequest, problem)
				return
			}
		}
		// No de-duplication: the same annotation twice shows twice.
		rep.annotations = append(rep.annotations, list.Annotations...)
		w.WriteHeader(http.StatusNoContent)
	default:
		s.unknownRoute(w, r)
	}
}
