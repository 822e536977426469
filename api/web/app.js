// klagg's live chart: candles and volume from klagg's own REST klines, kept
// live by its WebSocket kline stream. Every URL is relative to the page, so the
// page works behind a /t/<token>/ prefix too. window.klagg exposes the state
// for tests.
(function () {
  'use strict';
  const LWC = window.LightweightCharts;
  const base = location.pathname.replace(/[^/]*$/, '');
  const state = window.klagg = { ready: false, candles: 0, events: 0, lastClose: null, lastOpenTime: null, symbol: '', interval: '', error: null };
  const $ = (id) => document.getElementById(id);
  let info = null, ws = null, wsReady = false, subscribed = null, reqId = 0, retry = 0;

  const chart = LWC.createChart($('chart'), {
    autoSize: true,
    layout: { background: { color: '#131722' }, textColor: '#d1d4dc', attributionLogo: true },
    grid: { vertLines: { color: '#1f2430' }, horzLines: { color: '#1f2430' } },
    timeScale: { timeVisible: true, secondsVisible: true },
    rightPriceScale: { scaleMargins: { top: 0.08, bottom: 0.28 } },
  });
  const candles = chart.addSeries(LWC.CandlestickSeries, {
    upColor: '#26a69a', downColor: '#ef5350', borderVisible: false, wickUpColor: '#26a69a', wickDownColor: '#ef5350',
  });
  const volume = chart.addSeries(LWC.HistogramSeries, { priceFormat: { type: 'volume' }, priceScaleId: 'vol' });
  chart.priceScale('vol').applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });

  const toBar = (t, o, h, l, c) => ({ time: t / 1000, open: +o, high: +h, low: +l, close: +c });
  const toVol = (t, o, c, v) => ({ time: t / 1000, value: +v, color: +c >= +o ? 'rgba(38,166,154,0.5)' : 'rgba(239,83,80,0.5)' });

  function showLast(k) {
    const dl = $('last');
    dl.innerHTML = '';
    for (const [name, v] of k) {
      const dt = document.createElement('dt'); dt.textContent = name;
      const dd = document.createElement('dd'); dd.textContent = v;
      dl.append(dt, dd);
    }
  }

  async function load() {
    const sym = state.symbol, iv = state.interval;
    const url = base + info.rest_prefix.replace(/^\//, '') + '/klines?symbol=' + encodeURIComponent(sym) + '&interval=' + encodeURIComponent(iv) + '&limit=500';
    const res = await fetch(url);
    const rows = await res.json();
    if (sym !== state.symbol || iv !== state.interval) return; // switched meanwhile
    if (!res.ok) { state.error = rows.msg || String(res.status); candles.setData([]); volume.setData([]); state.candles = 0; return; }
    state.error = null;
    // Price precision from the data: the most decimals any price shows (2 to 8).
    let digits = 2;
    for (const r of rows.slice(-200)) for (const v of [r[1], r[2], r[3], r[4]]) { const f = v.split('.')[1]; if (f) digits = Math.max(digits, f.length); }
    digits = Math.min(digits, 8);
    candles.applyOptions({ priceFormat: { type: 'price', precision: digits, minMove: Math.pow(10, -digits) } });
    candles.setData(rows.map((r) => toBar(r[0], r[1], r[2], r[3], r[4])));
    volume.setData(rows.map((r) => toVol(r[0], r[1], r[4], r[5])));
    state.candles = rows.length;
    if (rows.length) {
      const r = rows[rows.length - 1];
      state.lastClose = +r[4]; state.lastOpenTime = r[0];
      showLast([['open time', new Date(r[0]).toISOString()], ['open', r[1]], ['high', r[2]], ['low', r[3]], ['close', r[4]], ['volume', r[5]], ['trades', r[8]]]);
    }
    chart.timeScale().scrollToRealTime();
  }

  function stream() { return state.symbol.toLowerCase() + '@kline_' + state.interval; }

  function subscribe() {
    if (!wsReady) return;
    const next = stream();
    if (subscribed === next) return;
    if (subscribed) ws.send(JSON.stringify({ method: 'UNSUBSCRIBE', params: [subscribed], id: ++reqId }));
    ws.send(JSON.stringify({ method: 'SUBSCRIBE', params: [next], id: ++reqId }));
    subscribed = next;
  }

  function connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    ws = new WebSocket(proto + '//' + location.host + base + info.ws_path.replace(/^\//, ''));
    ws.onopen = () => { wsReady = true; retry = 0; subscribed = null; subscribe(); $('conn').textContent = 'live'; $('conn').className = 'conn live'; };
    ws.onclose = () => {
      wsReady = false; $('conn').textContent = 'disconnected, retrying'; $('conn').className = 'conn down';
      setTimeout(connect, Math.min(30000, 500 * 2 ** retry++));
    };
    ws.onmessage = (m) => {
      const ev = JSON.parse(m.data);
      if (!ev || ev.e !== 'kline') return;
      const k = ev.k;
      if (k.s !== state.symbol || k.i !== state.interval) return;
      candles.update(toBar(k.t, k.o, k.h, k.l, k.c));
      volume.update(toVol(k.t, k.o, k.c, k.v));
      state.events++;
      if (state.lastOpenTime === null || k.t > state.lastOpenTime) state.candles++;
      state.lastClose = +k.c; state.lastOpenTime = k.t;
      showLast([['open time', new Date(k.t).toISOString()], ['open', k.o], ['high', k.h], ['low', k.l], ['close', k.c], ['volume', k.v], ['trades', k.n], ['closed', k.x ? 'yes' : 'no']]);
    };
  }

  function select(sym, iv) {
    sym = (sym || state.symbol).toUpperCase().trim();
    iv = iv || state.interval;
    if (!info.symbols.includes(sym) || !info.intervals.includes(iv)) return;
    state.symbol = sym; state.interval = iv;
    $('symbol').value = sym;
    for (const b of $('intervals').children) b.classList.toggle('active', b.dataset.iv === iv);
    history.replaceState(null, '', '?symbol=' + sym + '&interval=' + iv);
    state.lastOpenTime = null;
    load().then(subscribe, (e) => { state.error = String(e); });
  }

  async function status() {
    try {
      const s = await (await fetch(base + 'klagg/v1/status')).json();
      const rows = [];
      if (s.daemon) {
        rows.push(['trades/s', s.daemon.trades_per_sec.toFixed(0)], ['lag', s.daemon.lag_ms + ' ms'], ['gaps', s.daemon.gaps],
          ['exchange conns', s.daemon.connections], ['symbols', s.daemon.symbols]);
        for (const k of Object.keys(s.daemon.extra || {}).sort()) rows.push([k, s.daemon.extra[k]]);
      }
      rows.push(['ws clients', s.ws_connections], ['subscriptions', s.ws_subscriptions], ['frames sent', s.ws_frames_sent],
        ['klines published', s.published], ['closed lost', s.closed_lost]);
      const dl = $('status-list');
      dl.innerHTML = '';
      for (const [name, v] of rows) {
        const dt = document.createElement('dt'); dt.textContent = name;
        const dd = document.createElement('dd'); dd.textContent = String(v);
        dl.append(dt, dd);
      }
    } catch (e) { /* the next poll retries */ }
  }

  async function main() {
    info = await (await fetch(base + 'klagg/v1/info')).json();
    const dl = $('symbols');
    for (const s of info.symbols) { const o = document.createElement('option'); o.value = s; dl.append(o); }
    for (const iv of info.intervals) {
      const b = document.createElement('button'); b.textContent = iv; b.dataset.iv = iv;
      b.onclick = () => select(null, iv);
      $('intervals').append(b);
    }
    $('symbol').addEventListener('change', (e) => select(e.target.value, null));
    const q = new URLSearchParams(location.search);
    const sym = (q.get('symbol') || info.symbols[0] || '').toUpperCase();
    const iv = q.get('interval') || (info.intervals.includes('1m') ? '1m' : info.intervals[0]);
    connect();
    select(sym, iv);
    status();
    setInterval(status, 2000);
    state.ready = true;
  }
  main().catch((e) => { state.error = String(e); });
})();
