// The paper's analysis stage as a benchmark peer: Spark Streaming (DStreams) reading the events
// topic with spark-streaming-kafka-0-10's direct stream on local[2], joining each order with
// user_info and counting orders by age range, gender and day. It writes the same three CSV
// files as `tributary demo` (orders_by_age.csv, orders_by_gender.csv, orders_by_day.csv) plus
// status.json, after every batch that brought records and once more at the end.
//
// Each Kafka record value is one line as `tributary replay` writes it: a JSON object with
// integer user_id, time_stamp and action_type, or a malformed row sent raw. Classification
// follows the design brief: not a JSON object with those three integer fields -> rejected;
// action_type other than 2 -> filtered; else an order (every record counts: Spark has no event
// identity here, so a record delivered twice is counted twice).
//
// Per batch the executors count (key, n) pairs and reduceByKey; the driver adds the batch's
// few dozen totals to its running totals, writes the files, then commits the batch's offsets
// to Kafka (commitAsync), i.e. the usual at-least-once DStream pattern.
package io.tributary.bench.paperstack;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.broadcast.Broadcast;
import org.apache.spark.streaming.Durations;
import org.apache.spark.streaming.api.java.JavaInputDStream;
import org.apache.spark.streaming.api.java.JavaStreamingContext;
import org.apache.spark.streaming.kafka010.CanCommitOffsets;
import org.apache.spark.streaming.kafka010.ConsumerStrategies;
import org.apache.spark.streaming.kafka010.HasOffsetRanges;
import org.apache.spark.streaming.kafka010.KafkaUtils;
import org.apache.spark.streaming.kafka010.LocationStrategies;
import org.apache.spark.streaming.kafka010.OffsetRange;
import scala.Tuple2;

public final class OrdersJob {
  static final String[] AGE_ORDER = {"<18", "18-24", "25-29", "30-34", "35-39", "40-49", ">=50", "unknown"};
  static final String[] GENDER_ORDER = {"female", "male", "unknown"};
  // Keys of the per-batch counts: a prefix byte and a label.
  static final String AGE = "A", GENDER = "G", DAY = "D";
  static final String COUNTED = "#counted", FILTERED = "#filtered", REJECTED = "#rejected";
  private static final ObjectMapper JSON = new ObjectMapper();

  static String ageLabel(String code) {
    switch (code == null ? "" : code) {
      case "1": return "<18";
      case "2": return "18-24";
      case "3": return "25-29";
      case "4": return "30-34";
      case "5": return "35-39";
      case "6": return "40-49";
      case "7":
      case "8": return ">=50";
      default: return "unknown";
    }
  }

  static String genderLabel(String code) {
    switch (code == null ? "" : code) {
      case "0": return "female";
      case "1": return "male";
      default: return "unknown";
    }
  }

  /** user_id -> {age label, gender label}. */
  static HashMap<String, String[]> loadUserInfo(Path csv) throws IOException {
    HashMap<String, String[]> m = new HashMap<>();
    try (BufferedReader r = Files.newBufferedReader(csv, StandardCharsets.UTF_8)) {
      String header = r.readLine();
      if (header == null || !header.strip().equals("user_id,age_range,gender"))
        throw new IOException(csv + ": expected the header user_id,age_range,gender, got " + header);
      for (String line; (line = r.readLine()) != null; ) {
        if (line.endsWith("\r")) line = line.substring(0, line.length() - 1);
        if (line.isEmpty()) continue;
        String[] f = line.split(",", -1);
        m.put(f[0], new String[] {ageLabel(f.length > 1 ? f[1] : ""), genderLabel(f.length > 2 ? f[2] : "")});
      }
    }
    return m;
  }

  /** Adds the keys one record counts towards to `out`. */
  static void classify(String value, Map<String, String[]> info, HashMap<String, Long> out) {
    JsonNode n;
    try {
      n = value == null ? null : JSON.readTree(value);
    } catch (IOException e) {
      n = null;
    }
    JsonNode u = n != null && n.isObject() ? n.get("user_id") : null;
    JsonNode t = n != null && n.isObject() ? n.get("time_stamp") : null;
    JsonNode a = n != null && n.isObject() ? n.get("action_type") : null;
    if (u == null || t == null || a == null || !u.isIntegralNumber() || !t.isIntegralNumber() || !a.isIntegralNumber()) {
      out.merge(REJECTED, 1L, Long::sum);
      return;
    }
    if (!a.asText().equals("2")) {
      out.merge(FILTERED, 1L, Long::sum);
      return;
    }
    String[] labels = info.get(u.asText());
    StringBuilder day = new StringBuilder(t.asText());
    while (day.length() < 4) day.insert(0, '0');
    out.merge(COUNTED, 1L, Long::sum);
    out.merge(AGE + (labels == null ? "unknown" : labels[0]), 1L, Long::sum);
    out.merge(GENDER + (labels == null ? "unknown" : labels[1]), 1L, Long::sum);
    out.merge(DAY + day, 1L, Long::sum);
  }

  /** Running totals, on the driver. */
  static final class Totals {
    final HashMap<String, Long> age = new HashMap<>(), gender = new HashMap<>();
    final TreeMap<String, Long> day = new TreeMap<>();
    long counted, filtered, rejected, batches, records;
    long startNanos = System.nanoTime(), firstRecordNanos = -1, lastRecordNanos = -1;

    synchronized void add(Map<String, Long> batch, long records) {
      if (records == 0) return;
      long now = System.nanoTime();
      if (firstRecordNanos < 0) firstRecordNanos = now;
      lastRecordNanos = now;
      this.records += records;
      ++batches;
      for (Map.Entry<String, Long> e : batch.entrySet()) {
        String k = e.getKey();
        long v = e.getValue();
        switch (k) {
          case COUNTED: counted += v; break;
          case FILTERED: filtered += v; break;
          case REJECTED: rejected += v; break;
          default:
            String label = k.substring(1);
            if (k.startsWith(AGE)) age.merge(label, v, Long::sum);
            else if (k.startsWith(GENDER)) gender.merge(label, v, Long::sum);
            else day.merge(label, v, Long::sum);
        }
      }
    }

    synchronized long accounted() { return counted + filtered + rejected; }
  }

  static String share(long n, long total) {
    if (total == 0) return "0.0000";
    // The exact binary value rounded half-even, as C's printf and fmt's {:.4f} do.
    return new BigDecimal((double) n / (double) total).setScale(4, RoundingMode.HALF_EVEN).toPlainString();
  }

  static void writeAtomically(Path p, String text) throws IOException {
    Path tmp = p.resolveSibling(p.getFileName() + ".tmp");
    Files.writeString(tmp, text, StandardCharsets.UTF_8);
    Files.move(tmp, p, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  static String table(String header, String[] order, Map<String, Long> counts, long total) {
    StringBuilder s = new StringBuilder(header).append('\n');
    for (String label : order) {
      long n = counts.getOrDefault(label, 0L);
      s.append(label).append(',').append(n).append(',').append(share(n, total)).append('\n');
    }
    for (Map.Entry<String, Long> e : new TreeMap<>(counts).entrySet()) {  // labels outside the table, if any
      boolean known = false;
      for (String label : order) known |= label.equals(e.getKey());
      if (!known) s.append(e.getKey()).append(',').append(e.getValue()).append(',').append(share(e.getValue(), total)).append('\n');
    }
    return s.toString();
  }

  static void writeOutputs(Path out, Totals t, boolean complete) throws IOException {
    synchronized (t) {
      writeAtomically(out.resolve("orders_by_age.csv"), table("age_range,orders,share", AGE_ORDER, t.age, t.counted));
      writeAtomically(out.resolve("orders_by_gender.csv"), table("gender,orders,share", GENDER_ORDER, t.gender, t.counted));
      StringBuilder d = new StringBuilder("day,orders\n");
      for (Map.Entry<String, Long> e : t.day.entrySet()) d.append(e.getKey()).append(',').append(e.getValue()).append('\n');
      writeAtomically(out.resolve("orders_by_day.csv"), d.toString());
      double first = t.firstRecordNanos < 0 ? -1 : (t.firstRecordNanos - t.startNanos) / 1e9;
      double last = t.lastRecordNanos < 0 ? -1 : (t.lastRecordNanos - t.startNanos) / 1e9;
      writeAtomically(out.resolve("status.json"), String.format(java.util.Locale.ROOT,
          "{\"records\":%d,\"counted\":%d,\"filtered\":%d,\"rejected\":%d,\"batches\":%d,"
              + "\"first_batch_s\":%.3f,\"last_batch_s\":%.3f,\"complete\":%s}%n",
          t.records, t.counted, t.filtered, t.rejected, t.batches, first, last, complete));
    }
  }

  static final class Args {
    String bootstrap = "127.0.0.1:9092", topic, userInfo, out = "spark-out", group, master = "local[2]";
    long batchMs = 1000, expect = 0, idleS = 30, timeoutS = 600;
  }

  static Args parse(String[] argv) {
    Args a = new Args();
    for (int i = 0; i < argv.length; ++i) {
      String k = argv[i];
      if (k.equals("-h") || k.equals("--help")) usage(0);
      if (i + 1 >= argv.length) usage(2);
      String v = argv[++i];
      switch (k) {
        case "--bootstrap": a.bootstrap = v; break;
        case "--topic": a.topic = v; break;
        case "--user-info": a.userInfo = v; break;
        case "--out": a.out = v; break;
        case "--group": a.group = v; break;
        case "--master": a.master = v; break;
        case "--batch-ms": a.batchMs = Long.parseLong(v); break;
        case "--expect": a.expect = Long.parseLong(v); break;
        case "--idle-s": a.idleS = Long.parseLong(v); break;
        case "--timeout-s": a.timeoutS = Long.parseLong(v); break;
        default: usage(2);
      }
    }
    if (a.topic == null || a.userInfo == null) usage(2);
    if (a.group == null) a.group = "paper-stack-" + System.currentTimeMillis();
    return a;
  }

  static void usage(int code) {
    System.err.println("usage: OrdersJob --topic T --user-info user_info_format1.csv [--bootstrap 127.0.0.1:9092]\n"
        + "  [--out DIR] [--group G] [--master local[2]] [--batch-ms 1000]\n"
        + "  [--expect N: stop once N records are accounted for] [--idle-s 30: without --expect, stop after\n"
        + "   this long with no new record] [--timeout-s 600: stop anyway]");
    System.exit(code);
  }

  public static void main(String[] argv) throws Exception {
    Args a = parse(argv);
    Path out = Paths.get(a.out);
    Files.createDirectories(out);
    long t0 = System.nanoTime();
    HashMap<String, String[]> users = loadUserInfo(Paths.get(a.userInfo));
    System.out.printf("user_info: %d users loaded in %.2f s%n", users.size(), (System.nanoTime() - t0) / 1e9);

    SparkConf conf = new SparkConf()
        .setMaster(a.master)
        .setAppName("paper-stack-orders")
        .set("spark.ui.enabled", "false")
        .set("spark.ui.showConsoleProgress", "false")
        .set("spark.default.parallelism", "2")
        .set("spark.streaming.stopGracefullyOnShutdown", "false")
        // Loopback only: otherwise the driver's RPC and block manager bind to the host's address.
        .setIfMissing("spark.driver.bindAddress", "127.0.0.1")
        .setIfMissing("spark.driver.host", "127.0.0.1");
    JavaStreamingContext ssc = new JavaStreamingContext(conf, Durations.milliseconds(a.batchMs));
    ssc.sparkContext().setLogLevel("WARN");
    Broadcast<HashMap<String, String[]>> info = ssc.sparkContext().broadcast(users);

    Map<String, Object> kafka = new HashMap<>();
    kafka.put("bootstrap.servers", a.bootstrap);
    kafka.put("key.deserializer", StringDeserializer.class);
    kafka.put("value.deserializer", StringDeserializer.class);
    kafka.put("group.id", a.group);
    kafka.put("auto.offset.reset", "earliest");
    kafka.put("enable.auto.commit", false);
    JavaInputDStream<ConsumerRecord<String, String>> stream = KafkaUtils.createDirectStream(
        ssc, LocationStrategies.PreferConsistent(), ConsumerStrategies.<String, String>Subscribe(List.of(a.topic), kafka));

    Totals totals = new Totals();
    stream.foreachRDD(rdd -> {
      OffsetRange[] ranges = ((HasOffsetRanges) rdd.rdd()).offsetRanges();
      long records = 0;
      for (OffsetRange r : ranges) records += r.count();
      if (records == 0) return;
      JavaPairRDD<String, Long> counts = rdd.mapPartitionsToPair((Iterator<ConsumerRecord<String, String>> it) -> {
        HashMap<String, String[]> m = info.value();
        HashMap<String, Long> local = new HashMap<>();
        while (it.hasNext()) classify(it.next().value(), m, local);
        List<Tuple2<String, Long>> l = new ArrayList<>(local.size());
        for (Map.Entry<String, Long> e : local.entrySet()) l.add(new Tuple2<>(e.getKey(), e.getValue()));
        return l.iterator();
      }).reduceByKey(Long::sum);
      totals.add(counts.collectAsMap(), records);
      writeOutputs(out, totals, false);
      ((CanCommitOffsets) stream.inputDStream()).commitAsync(ranges);
    });

    long startCall = System.nanoTime();
    ssc.start();
    totals.startNanos = System.nanoTime();
    System.out.printf(java.util.Locale.ROOT, "streaming started at %d ms since the epoch (ssc.start took %.2f s)%n",
        System.currentTimeMillis(), (totals.startNanos - startCall) / 1e9);
    long deadline = totals.startNanos + a.timeoutS * 1_000_000_000L;
    String why = "timeout";
    while (System.nanoTime() < deadline) {
      ssc.awaitTerminationOrTimeout(200);
      if (a.expect > 0 && totals.accounted() >= a.expect) { why = "expected"; break; }
      synchronized (totals) {
        if (a.expect == 0 && totals.lastRecordNanos > 0 && System.nanoTime() - totals.lastRecordNanos > a.idleS * 1_000_000_000L) {
          why = "idle";
          break;
        }
      }
    }
    double done = (System.nanoTime() - totals.startNanos) / 1e9;
    ssc.stop(true, false);
    boolean complete = a.expect > 0 ? totals.accounted() >= a.expect : !why.equals("timeout");
    writeOutputs(out, totals, complete);
    synchronized (totals) {
      double span = totals.lastRecordNanos > totals.firstRecordNanos ? (totals.lastRecordNanos - totals.firstRecordNanos) / 1e9 : 0;
      System.out.printf(java.util.Locale.ROOT,
          "stopped (%s) at %d ms since the epoch, %.2f s after the start: %d records in %d batches (orders %d, "
              + "filtered %d, rejected %d); first batch at %.2f s, last at %.2f s (%.0f records/s between them)%n",
          why, System.currentTimeMillis(), done, totals.records, totals.batches, totals.counted, totals.filtered, totals.rejected,
          (totals.firstRecordNanos - totals.startNanos) / 1e9, (totals.lastRecordNanos - totals.startNanos) / 1e9,
          span > 0 ? totals.records / span : 0.0);
    }
    System.exit(complete ? 0 : 1);
  }
}
