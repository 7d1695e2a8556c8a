package riffle.interop;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import org.apache.kafka.common.utils.internals.Exit;

/**
 * Tool runs one of Kafka's command-line tools: the main class its
 * kafka-*.sh script starts, from the kafka-tools jar on the test
 * classpath. It runs in this JVM (a JVM per run would cost seconds each)
 * with standard input, output and error redirected, and with Kafka's exit
 * hook turned into an exception, which is how Kafka's own tool tests run
 * them.
 */
final class Tool {
  /** Result is a finished tool run. */
  record Result(int exit, String out, String err) {
    List<String> lines() {
      return out.isBlank() ? List.of() : Arrays.asList(out.strip().split("\n"));
    }

    @Override
    public String toString() {
      return "exit " + exit + "\nstdout:\n" + out + "\nstderr:\n" + err;
    }
  }

  static final String TOPICS = "org.apache.kafka.tools.TopicCommand";
  static final String CONFIGS = "org.apache.kafka.tools.ConfigCommand";
  static final String CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
  static final String SHARE_GROUPS = "org.apache.kafka.tools.consumer.group.ShareGroupCommand";
  static final String CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer";
  static final String CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer";
  static final String CONSOLE_SHARE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleShareConsumer";
  static final String PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance";
  static final String CONSUMER_PERF = "org.apache.kafka.tools.ConsumerPerformance";
  static final String SHARE_CONSUMER_PERF = "org.apache.kafka.tools.ShareConsumerPerformance";

  /** Exited is thrown in place of the JVM exit a tool asks for. */
  static final class Exited extends RuntimeException {
    Exited(int status, String msg) {
      super("exit " + status + (msg == null ? "" : ": " + msg));
    }
  }

  private Tool() {}

  /** Runs mainClass with args and stdin, and returns its exit status and output. */
  static synchronized Result run(String stdin, String mainClass, String... args) throws ReflectiveOperationException {
    PrintStream stdout = System.out;
    PrintStream stderr = System.err;
    InputStream in = System.in;
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    PrintStream errStream = new PrintStream(err, true, StandardCharsets.UTF_8);
    // The first exit a tool asks for is its status: some tools catch the
    // exception that stands in for it and then ask again.
    Integer[] exited = {null};
    Exit.Procedure exit = (code, msg) -> {
      if (exited[0] == null) {
        exited[0] = code;
      }
      throw new Exited(code, msg);
    };
    Exit.setExitProcedure(exit);
    Exit.setHaltProcedure(exit);
    int status = 0;
    // A tool's shutdown hook would run when this JVM exits, long after the
    // tool: the tools close their clients on the normal path anyway.
    Exit.setShutdownHookAdder((name, hook) -> {});
    System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
    System.setErr(errStream);
    System.setIn(new ByteArrayInputStream(stdin.getBytes(StandardCharsets.UTF_8)));
    try {
      Class.forName(mainClass).getMethod("main", String[].class).invoke(null, (Object) args);
    } catch (InvocationTargetException e) {
      if (!(e.getCause() instanceof Exited)) {
        status = 1;
        e.getCause().printStackTrace(errStream);
      }
    } finally {
      System.out.flush();
      System.setOut(stdout);
      System.setErr(stderr);
      System.setIn(in);
      Exit.resetExitProcedure();
      Exit.resetHaltProcedure();
      Exit.resetShutdownHookAdder();
    }
    if (exited[0] != null) {
      status = exited[0];
    }
    return new Result(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  /** Runs a tool that must succeed, and returns its result. */
  static Result ok(String mainClass, String... args) throws ReflectiveOperationException {
    return okWithInput("", mainClass, args);
  }

  static Result okWithInput(String stdin, String mainClass, String... args) throws ReflectiveOperationException {
    Result r = run(stdin, mainClass, args);
    if (r.exit != 0) {
      throw new AssertionError(mainClass + " " + String.join(" ", args) + " failed: " + r);
    }
    return r;
  }
}
