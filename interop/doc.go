// Package interop tests Riffle's broker with Kafka clients that Riffle's
// authors did not write: kcat (librdkafka), kafkajs, sarama and, through
// the Maven module in interop/java, Apache Kafka's own Java clients, Kafka
// Streams and command-line tools, besides franz-go which the other tests
// use.
//
// Each test skips with a message when its client is not installed, unless
// RIFFLE_INTEROP_REQUIRED=1 (as CI sets it), in which case a missing client
// fails the test. .ci/run installs kcat with apt-get, kafkajs with npm and
// the Java module's dependencies with Maven.
package interop
