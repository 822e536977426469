// Drives ccxt (binance or binanceusdm) against klagg's API server, every URL
// rewritten to the test server: fetchOHLCV over REST, then watchOHLCV over
// WebSocket. Prints one JSON object per line: {"fetch":[...]}, then
// {"watch":[...]} for every update, until stdin closes or the timeout.
// Usage: KLAGG_HTTP=http://127.0.0.1:PORT KLAGG_WS=ws://127.0.0.1:PORT \
//        node client.mjs binanceusdm BTC/USDT:USDT 1m 10
import ccxt from 'ccxt';

const [id, symbol, timeframe, limitArg] = process.argv.slice(2);
const http = process.env.KLAGG_HTTP, ws = process.env.KLAGG_WS;
const ex = new ccxt.pro[id]({ enableRateLimit: false, timeout: 10000, verbose: !!process.env.CCXT_VERBOSE });
const rewrite = (v, origin) => (typeof v === 'string' ? v.replace(/^[a-z]+:\/\/[^/]+/, origin) : v);
for (const [k, v] of Object.entries(ex.urls.api)) {
  if (k === 'ws') {
    for (const [wk, wv] of Object.entries(v)) {
      if (typeof wv === 'string') v[wk] = rewrite(wv, ws);
    }
  } else {
    ex.urls.api[k] = rewrite(v, http);
  }
}
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const timer = setTimeout(() => { out({ error: 'timeout' }); process.exit(2); }, 60000);
process.stdin.on('end', async () => { clearTimeout(timer); await ex.close(); process.exit(0); });
process.stdin.resume();
try {
  await ex.loadMarkets();
  const candles = await ex.fetchOHLCV(symbol, timeframe, undefined, Number(limitArg));
  out({ fetch: candles, market: ex.market(symbol).id });
  await ex.loadHttpProxyAgent(); // ccxt needs it before it opens a plain ws:// URL
  for (;;) {
    const c = await ex.watchOHLCV(symbol, timeframe);
    out({ watch: c });
  }
} catch (e) {
  out({ error: String(e && e.stack || e) });
  process.exit(1);
}
