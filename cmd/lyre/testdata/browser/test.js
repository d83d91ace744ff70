// The browser half of TestBrowser: MQTT.js and @stomp/stompjs publish and subscribe across the two protocols
// over ws:// against the broker named by ?broker=HOST:PORT. The verdict goes to window.lyreResult:
// {done, ok, checks: {name: "ok" | what went wrong}, error, log}.
(function () {
  "use strict";

  var params = new URLSearchParams(location.search);
  var broker = params.get("broker");
  var stepTimeout = Number(params.get("timeout_ms") || 10000);
  var result = { done: false, ok: false, checks: {}, error: "", log: [] };
  window.lyreResult = result;

  function log(s) {
    result.log.push(new Date().toISOString().slice(11, 23) + " " + s);
    document.getElementById("log").textContent = result.log.join("\n");
  }

  function finish(err) {
    if (err) {
      result.error = String(err);
      log("error: " + err);
    }
    var names = Object.keys(result.checks);
    result.ok = !result.error && names.length > 0 && names.every(function (n) { return result.checks[n] === "ok"; });
    result.done = true;
    var el = document.getElementById("result");
    el.textContent = JSON.stringify({ ok: result.ok, checks: result.checks, error: result.error }, null, 2);
    el.setAttribute("data-done", "1");
  }

  // withTimeout rejects when p has not settled within stepTimeout, naming the step.
  function withTimeout(p, what) {
    return new Promise(function (resolve, reject) {
      var t = setTimeout(function () { reject(new Error("timeout: " + what)); }, stepTimeout);
      p.then(function (v) { clearTimeout(t); resolve(v); }, function (e) { clearTimeout(t); reject(e); });
    });
  }

  // waitFor polls fn until it returns "ok" or the step times out; the last answer explains a failure.
  function waitFor(fn) {
    return new Promise(function (resolve) {
      var deadline = Date.now() + stepTimeout;
      (function poll() {
        var r = fn();
        if (r === "ok" || Date.now() > deadline) { resolve(r); return; }
        setTimeout(poll, 20);
      })();
    });
  }

  // connectMQTT opens an MQTT.js client over ws://broker/mqtt; MQTT.js offers the sub-protocol "mqtt".
  function connectMQTT(name, version) {
    var c = mqtt.connect("ws://" + broker + "/mqtt", {
      protocolVersion: version,
      clientId: "browser-" + name + "-" + Math.random().toString(16).slice(2, 10),
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: stepTimeout,
      keepalive: 30,
    });
    c.received = [];
    c.on("message", function (topic, payload, packet) {
      c.received.push({ topic: topic, payload: new TextDecoder().decode(payload), props: packet.properties || {} });
      log(name + " got " + topic);
    });
    return withTimeout(new Promise(function (resolve, reject) {
      c.once("connect", function () { log(name + " connected"); resolve(c); });
      c.once("error", reject);
      c.once("close", function () { reject(new Error(name + ": connection closed")); });
    }), name + " connect");
  }

  // connectSTOMP opens a stompjs client over ws://broker/stomp, offering v12.stomp, v11.stomp and v10.stomp.
  function connectSTOMP() {
    var c = new StompJs.Client({
      brokerURL: "ws://" + broker + "/stomp",
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      connectionTimeout: stepTimeout,
    });
    c.received = [];
    var p = new Promise(function (resolve, reject) {
      c.onConnect = function (frame) {
        log("stomp connected, version " + frame.headers.version + ", sub-protocol " + c.webSocket.protocol);
        // stompjs offers v12.stomp first: the broker picks it and speaks STOMP 1.2.
        result.checks.stomp_version = frame.headers.version === "1.2" && c.webSocket.protocol === "v12.stomp" ? "ok" :
          "version " + frame.headers.version + " over sub-protocol " + JSON.stringify(c.webSocket.protocol) + ", want 1.2 over v12.stomp";
        resolve(c);
      };
      c.onStompError = function (frame) { reject(new Error("stomp ERROR: " + frame.headers.message + " " + frame.body)); };
      c.onWebSocketClose = function (ev) { reject(new Error("stomp: websocket closed, code " + ev.code)); };
      c.onWebSocketError = function () { reject(new Error("stomp: websocket error")); };
    });
    c.activate();
    return withTimeout(p, "stomp connect");
  }

  function userProperty(props, name) {
    var v = (props.userProperties || {})[name];
    return Array.isArray(v) ? v[0] : v;
  }

  // expectMQTT checks that client c received topic with payload (and user property x-from when want.from).
  function expectMQTT(c, check, topic, payload, from) {
    return waitFor(function () {
      var m = c.received.find(function (m) { return m.topic === topic; });
      if (!m) { return "nothing on " + topic + " (got " + JSON.stringify(c.received.map(function (m) { return m.topic; })) + ")"; }
      if (m.payload !== payload) { return "payload " + JSON.stringify(m.payload) + ", want " + JSON.stringify(payload); }
      if (from !== undefined && userProperty(m.props, "x-from") !== from) {
        return "user property x-from " + JSON.stringify(userProperty(m.props, "x-from")) + ", want " + JSON.stringify(from) +
          " (properties " + JSON.stringify(m.props) + ")";
      }
      return "ok";
    }).then(function (r) { result.checks[check] = r; log(check + ": " + r); });
  }

  function expectSTOMP(c, check, destination, body, from) {
    return waitFor(function () {
      var m = c.received.find(function (m) { return m.headers.destination === destination; });
      if (!m) { return "nothing on " + destination + " (got " + JSON.stringify(c.received.map(function (m) { return m.headers.destination; })) + ")"; }
      if (m.body !== body) { return "body " + JSON.stringify(m.body) + ", want " + JSON.stringify(body); }
      if (from !== undefined && m.headers["x-from"] !== from) {
        return "header x-from " + JSON.stringify(m.headers["x-from"]) + ", want " + JSON.stringify(from) +
          " (headers " + JSON.stringify(m.headers) + ")";
      }
      return "ok";
    }).then(function (r) { result.checks[check] = r; log(check + ": " + r); });
  }

  async function run() {
    if (!broker) { throw new Error("no ?broker=HOST:PORT"); }
    var m5 = await connectMQTT("mqtt5", 5);
    var m4 = await connectMQTT("mqtt311", 4);
    var st = await connectSTOMP();
    try {
      await withTimeout(m5.subscribeAsync("browser/#", { qos: 1 }), "mqtt5 subscribe");
      await withTimeout(m4.subscribeAsync("browser/#", { qos: 1 }), "mqtt311 subscribe");
      // The receipt proves the SUBSCRIBE was processed before anything is published.
      await withTimeout(new Promise(function (resolve) {
        st.watchForReceipt("sub-1", resolve);
        st.subscribe("/topic/browser.**", function (m) {
          st.received.push(m);
          log("stomp got " + m.headers.destination);
        }, { receipt: "sub-1" });
      }), "stomp subscribe");
      log("subscribed");

      await withTimeout(m5.publishAsync("browser/m2s", "hello from MQTT 5", {
        qos: 1, properties: { userProperties: { "x-from": "mqtt5" } },
      }), "mqtt5 publish");
      await withTimeout(m4.publishAsync("browser/m2s/v311", "hello from MQTT 3.1.1", { qos: 1 }), "mqtt311 publish");
      await withTimeout(new Promise(function (resolve) {
        st.watchForReceipt("send-1", resolve);
        st.publish({ destination: "/topic/browser.s2m", body: "hello from STOMP", headers: { "x-from": "stomp", receipt: "send-1" } });
      }), "stomp send");
      log("published");

      await Promise.all([
        expectSTOMP(st, "mqtt5_to_stomp", "/topic/browser.m2s", "hello from MQTT 5", "mqtt5"),
        expectSTOMP(st, "mqtt311_to_stomp", "/topic/browser.m2s.v311", "hello from MQTT 3.1.1"),
        expectMQTT(m5, "stomp_to_mqtt5", "browser/s2m", "hello from STOMP", "stomp"),
        expectMQTT(m4, "stomp_to_mqtt311", "browser/s2m", "hello from STOMP"),
      ]);
    } finally {
      await Promise.allSettled([
        withTimeout(m5.endAsync(), "mqtt5 disconnect"),
        withTimeout(m4.endAsync(), "mqtt311 disconnect"),
        withTimeout(st.deactivate(), "stomp disconnect"),
      ]);
      log("disconnected");
    }
  }

  run().then(function () { finish(); }, finish);
})();
