/**
 * The viewer's page: a fixed skeleton (no data in it), its style and script from this server
 * (`/app.css`, `/app.js`), nothing inline, so the Content-Security-Policy needs no exception.
 * Everything from the logs is put in by the script as text.
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>aztp audit view</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header class="top">
  <h1>aztp audit view</h1>
  <span id="source" class="source"></span>
  <span id="live" class="live" title="new entries appear as the logs grow">connecting</span>
  <button id="reverify" type="button" title="verify every log again in full: chain, checkpoints and their signatures, witness">Verify again</button>
</header>
<main>
  <section id="status" class="status" aria-live="polite">
    <p id="loading">Verifying the logs&hellip; nothing is shown until each log's verdict is in.</p>
  </section>
  <section id="verdicts" class="verdicts" aria-label="verdict of each log"></section>
  <section id="filters" class="filters" aria-label="filters" hidden>
    <label class="wide">Search <input id="f-q" type="search" placeholder="any text: an ID, a tool, a code, a jti" autocomplete="off"></label>
    <label>Caller <input id="f-caller" list="dl-callers" autocomplete="off" placeholder="ID or part of one"></label>
    <label>Person <input id="f-person" list="dl-persons" autocomplete="off" placeholder="issuer#subject or subject"></label>
    <label>Callee <input id="f-callee" list="dl-callees" autocomplete="off" placeholder="ID or part of one"></label>
    <label>Tool <input id="f-tool" list="dl-tools" autocomplete="off"></label>
    <label>Decision <select id="f-decision"><option value="">any</option><option value="allow">allow</option><option value="deny">deny</option><option value="audit-only">audit-only</option></select></label>
    <label>Code <input id="f-code" list="dl-codes" autocomplete="off" placeholder="ERR_..."></label>
    <label>Outcome <select id="f-outcome"><option value="">any</option><option value="ok">ok</option><option value="error">error</option><option value="denied">denied</option><option value="interrupted">interrupted</option></select></label>
    <label>From <input id="f-since" type="datetime-local" step="1"></label>
    <label>Until <input id="f-until" type="datetime-local" step="1"></label>
    <label>Tool-call id <input id="f-toolCallId" autocomplete="off"></label>
    <label>Trace id <input id="f-traceId" autocomplete="off"></label>
    <label>Verification <select id="f-state"><option value="">any</option><option value="problems">bad or unverified</option><option value="signed">signed</option><option value="checkpointed">chained (signatures not checked)</option><option value="uncovered">not yet checkpointed</option><option value="bad">first bad entry</option><option value="unverified">unverified</option></select></label>
    <label>Log <select id="f-log"><option value="">any</option></select></label>
    <span class="buttons"><button id="apply" type="button">Apply</button> <button id="clear" type="button">Clear</button></span>
    <datalist id="dl-callers"></datalist><datalist id="dl-persons"></datalist><datalist id="dl-callees"></datalist><datalist id="dl-tools"></datalist><datalist id="dl-codes"></datalist>
  </section>
  <section id="charts" class="charts" aria-label="charts" hidden>
    <figure class="timeline"><figcaption>Calls over time, denials by reason</figcaption><div id="chart-time"></div><ul id="chart-legend" class="legend"></ul></figure>
    <figure class="busiest"><figcaption>Busiest callers</figcaption><ol id="chart-callers"></ol></figure>
    <figure class="busiest"><figcaption>Busiest tools</figcaption><ol id="chart-tools"></ol></figure>
  </section>
  <section id="calls" class="calls" aria-label="calls" hidden>
    <div class="pager"><span id="count"></span> <span id="fresh" class="fresh" hidden></span>
      <span class="pager-buttons"><button id="newer" type="button">&larr; newer</button> <button id="older" type="button">older &rarr;</button>
      <label>rows <select id="limit"><option>25</option><option selected>50</option><option>100</option><option>200</option></select></label></span></div>
    <table id="rows">
      <thead><tr><th>Verified</th><th>Time</th><th>Who called</th><th>What</th><th>Where</th><th>Decision</th><th>Outcome</th><th>Duration</th><th>Seen by</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="detail" class="detail" aria-label="call detail" hidden></section>
</main>
</body>
</html>
`;
