// Package interop tests Riffle's broker with Kafka clients that Riffle's
// authors did not write: kcat (librdkafka), kafkajs and sarama, besides
// franz-go which the other tests use.
//
// Each test skips with a message when its client is not installed, unless
// RIFFLE_INTEROP_REQUIRED=1 (as CI sets it), in which case a missing client
// fails the test. .ci/run installs kcat with apt-get and kafkajs with npm.
package interop
