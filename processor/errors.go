package processor

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// ErrorContext describes the record being handled when an error occurred.
// Key and Value are the raw bytes of the input record as read from its
// topic; they are nil when the error happened in a punctuator.
type ErrorContext struct {
	// Node is the name of the topology node that failed.
	Node      string
	TaskID    TaskID
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Key       []byte
	Value     []byte
	Headers   []Header
}

// Action is an error handler's verdict.
type Action int

const (
	// Fail stops the task, and with it the application, with the error.
	Fail Action = iota
	// Continue drops the record (downstream of the failing node) and goes on
	// with the next one.
	Continue
)

// DeadLetter is a record an error handler wants written to a topic.
type DeadLetter struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
}

// Response is what an ErrorHandler decides.
type Response struct {
	Action      Action
	DeadLetters []DeadLetter
}

// ErrorHandler decides what happens to a record whose deserialization or
// processing failed. It mirrors Kafka Streams' DeserializationExceptionHandler
// and ProcessingExceptionHandler (KIP-1033), with dead-letter records as in
// KIP-1034.
type ErrorHandler func(ec ErrorContext, err error) Response

// FailOnError returns the handler that stops processing on the first error
// (Kafka Streams' LogAndFailExceptionHandler).
func FailOnError() ErrorHandler {
	return func(ErrorContext, error) Response { return Response{Action: Fail} }
}

// LogAndContinue returns a handler that logs the error with logger and skips
// the record (Kafka Streams' LogAndContinueExceptionHandler).
func LogAndContinue(logger *slog.Logger) ErrorHandler {
	return func(ec ErrorContext, err error) Response {
		logger.Warn("skipping record after error", "node", ec.Node, "task", ec.TaskID.String(),
			"topic", ec.Topic, "partition", ec.Partition, "offset", ec.Offset, "err", err)
		return Response{Action: Continue}
	}
}

// Dead-letter header names, as proposed by KIP-1034.
const (
	HeaderErrorMessage   = "__streams.errors.message"
	HeaderErrorTopic     = "__streams.errors.topic"
	HeaderErrorPartition = "__streams.errors.partition"
	HeaderErrorOffset    = "__streams.errors.offset"
)

// DeadLetterQueue returns a handler that logs the error, writes the raw
// input record to topic with headers naming the error and the record's
// origin, and continues.
func DeadLetterQueue(topic string, logger *slog.Logger) ErrorHandler {
	logAndContinue := LogAndContinue(logger)
	return func(ec ErrorContext, err error) Response {
		resp := logAndContinue(ec, err)
		headers := append([]Header(nil), ec.Headers...)
		headers = append(headers,
			Header{Key: HeaderErrorMessage, Value: []byte(err.Error())},
			Header{Key: HeaderErrorTopic, Value: []byte(ec.Topic)},
			Header{Key: HeaderErrorPartition, Value: []byte(strconv.Itoa(int(ec.Partition)))},
			Header{Key: HeaderErrorOffset, Value: []byte(strconv.FormatInt(ec.Offset, 10))},
		)
		resp.DeadLetters = []DeadLetter{{Topic: topic, Key: ec.Key, Value: ec.Value, Headers: headers}}
		return resp
	}
}

// PanicError is the error a processor's panic is converted to, so that no
// panic escapes a task unhandled.
type PanicError struct {
	Node  string
	Value any
}

// Error implements error.
func (e *PanicError) Error() string {
	return fmt.Sprintf("processor %q panicked: %v", e.Node, e.Value)
}
