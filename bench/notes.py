"""The text around docs/benchmarks.md's table: what is measured, and how to read the rows."""

from __future__ import annotations

import textwrap

from shared.arm_pacing import ARM_WRITE_CAPACITY, ARM_WRITES_PER_SECOND, WRITE_HEADROOM
from shared.host_config import function_timeout, stop_budget

from . import estate

INTRO = """\
Remote calls are those to Azure AD, the managed-identity endpoint, ARM, the Azure ML regional API and
SendGrid, counted from the stand-ins' request log; Table Storage calls are counted on their own (in the
targets). Wall time is the function's `main()` in a fresh process, so a sweep or mail run includes
importing its compute client (azureml-core about 0.6 s; the ARM client's requests and azure-identity:
see the loading rows); a tick with nothing due imports no SDK at all. The sweeps run with both compute
clients in the same bench run, against the same stand-ins, each chosen as in Azure by the App Setting
`compute_api`: `azureml-core` (the default) and `arm`. Both sign in as the stand-in's service principal
(`tenant_id`, `service_principal_id`, `service_principal_password`); the write-bucket row signs in as the
Function App's managed identity (the stand-in's identity endpoint, `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`).
"""

# A failure the bench has seen and can explain; the note is added only when a row shows it.
KNOWN_FAILURES = {
    "unreachable: the last attempt returns or raises": """\
- **Why the ARM client's larger sweeps fail** ("unreachable: the last attempt returns or raises"): when
  an instance's write token would come after its listing went stale, ArmWorkspace.stop answers STALE
  without sending anything; shared/stopping.py has already counted that as one of the instance's 4 tries
  (`tries_left[name] -= 1` before `workspace.stop`). An instance passed over by 4 listings is then retried
  with `RetryPolicy(attempts=0)`, whose loop never runs and which raises that AssertionError. At ARM's
  10 writes/s a listing lets about 180 + 90 stops through first, then about 100 each, so one run stops
  about 570 instances and fails the rest (later ticks inside the night's catch-up window retry them). A
  fix belongs in shared/ (not counting a stop that was never sent as a try; never building a policy
  with 0 attempts). In a scratch copy with that fix, the 1,000 row took 83.3 s (floor 82 s), 1.09 calls
  per instance, 18 connections, 65 MB, and the 5,000 row at 30/s 168.9 s, 0 × 429, all stopped.
""",
}


def notes(bucket_rate: float, errors: list[str]) -> str:
    client = ARM_WRITE_CAPACITY - WRITE_HEADROOM
    rate = ARM_WRITES_PER_SECOND
    timeout, budget = function_timeout(), stop_budget()
    scale = bucket_rate / rate
    text = f"""\
Notes:
- The timers tick every five minutes and ask the app's calendar what is due. Each run sets `shutdown_time`
  so that the real clock is where the case needs it: inside the sweep's catch-up window, inside the mail's
  warning window, or outside every window (the tick with nothing due). Each run has a ledger table of its
  own, created beforehand as it exists after the first night (the very first write ever adds 2 Table
  calls: a refused insert and the table's creation).
- What the network costs: every remote call 50 ms (`StandIns.latency`, slept by the stand-in before it
  answers; the managed-identity endpoint is on the host, exempt as in Azure) and every new TLS connection
  20 ms more (`StandIns.connection_cost`, slept before the handshake: a TCP and a TLS round trip to a
  nearby Azure front door), for both compute clients and every case except the page rows (in process, no
  network). "TLS connections" counts the connections the stand-ins accepted (Azure AD, ARM, the regional
  API, SendGrid; not Table Storage, not the identity endpoint). "CPU ms / call" is the user + system CPU
  of the function's process during `main()`, all threads, divided by its remote calls (the stand-ins'
  own CPU is not in it).
- Peak RSS is the function's process's high-water mark (VmHWM in /proc/self/status). Earlier versions
  of this table read getrusage's ru_maxrss, which Linux carries over fork and exec: every child reported
  at least the RSS of the bench process that started it (about 90 MB), so the 94 MB given then for a tick
  with nothing due was the bench's, not the app's.
- The function's processes get a HOME of their own for the whole bench (a temporary directory):
  azureml-core caches each workspace's service discovery in ~/.azureml/.discovery and reads and rewrites
  the whole file for every look-up. A deployment's workspaces keep their ids, so there the file stays
  small; the stand-in gives its workspaces new ids on every reset, so on a developer's machine it grows
  with every test and bench run (1 MB, 1,200 entries, when the estate rows were added), which would slow
  azureml-core's rows more every time.
- `azureml-core`: calls per stopped instance are 2: the adapter's own fresh read of the instance
  (`refresh_state`, a GET on the regional Azure ML API; a job may have started since the listing) and the
  stop POST to ARM, sent without azureml-core's internal re-read. The fixed part is 5 calls (Azure AD
  discovery and token, the subscription check, the workspace, the discovery document) plus one listing
  page per 100 computes (the stand-in's page size). A stop goes out only while the listing that said
  Running is at most 10 s old; when the stops take longer, those left are listed again (a relist: all
  pages once more). Hence calls <= 2N + ⌈N/page⌉·(1 + relists) + 5. It opens a new TLS connection for
  every request, and beyond about 16 parallel stops its process is CPU-bound.
- `arm`: one ARM POST per stop (202; 409 is "not running"), no read before it; the fixed part is Azure
  AD's discovery and token with a service principal (2 calls), one identity-endpoint request with the
  managed identity; one token per run, one pooled keep-alive session, so about `max_parallel` + 1
  connections. Listing pages and relists as above.
- **ARM's write bucket sets the ARM client's pace.** ARM gives a principal {ARM_WRITE_CAPACITY} writes,
  refilled at {rate:g} per second, and every stop is a write. The client paces its stops with its own
  bucket (shared/arm_pacing.py): {ARM_WRITE_CAPACITY} - {WRITE_HEADROOM} (kept in reserve for network
  jitter) = {client} tokens at once, then {rate:g}/s, whether or not ARM would throttle. So N stops take at
  least (N - {client}) / {rate:g} s: {(300 - client) / rate:.0f} s for 300, {(1000 - client) / rate:.0f} s
  for 1,000, {(5000 - client) / rate:.0f} s for 5,000. The issue's wall targets for `arm` (2.0 s for 300,
  5.0 s for 1,000) lie below that floor, and below ARM's own, (N - {ARM_WRITE_CAPACITY}) / {rate:g}
  ({(300 - ARM_WRITE_CAPACITY) / rate:.0f} s, {(1000 - ARM_WRITE_CAPACITY) / rate:.0f} s): no client that
  stops each instance with one ARM write can meet them without being throttled, so they are NOT met here
  and cannot be; each row gives its floor to compare with. Such a target shows as "missed as documented", with
  its reason, and does not make `make bench` exit 1 (every other miss does). The paced stops also outlast the listing's
  10 s freshness, so the client lists again about every 100 stops (every 10 s): about (N - {client}) / 100
  relists of ⌈N/page⌉ pages each, which the issue's N + ⌈N/page⌉ + 3 bound has no room for (at 300:
  one relist; over by those pages and no more, that bound is missed as documented too).
- Loading with `arm`: the function modules alone load as with `azureml-core` (adapters are built on
  first use, so `compute_api` changes nothing there: the loading rows above); building the ARM adapter
  then imports requests, azure-core and azure-identity (which imports cryptography and msal) and makes the
  credential. `python -X importtime` on this machine puts that at about 110 ms on top of the modules.
- **The write-bucket row.** The stand-in enforces ARM's bucket per principal ({ARM_WRITE_CAPACITY} writes,
  429 SubscriptionRequestsThrottled with Retry-After past it). At ARM's {rate:g}/s, 5,000 stops need
  (5000 - {client}) / {rate:g} = {(5000 - client) / rate:.0f} s of the client's pacing alone, and the stop
  budget (shared/host_config.stop_budget: functionTimeout {timeout / 60:.0f} min from host.json less
  {timeout - budget:.0f} s for start-up, listing and the final save) is {budget:.0f} s: 5,000 does not fit in
  one Consumption run ({client} + {rate:g} × {budget:.0f} = {client + rate * budget:,.0f} stops at most; the
  rest would fail for lack of time and wait for the next tick inside the catch-up window). So the row
  compresses time: the stand-in's bucket keeps ARM's capacity ({ARM_WRITE_CAPACITY}) but refills at
  {bucket_rate:g}/s ({scale:g} × ARM's), and the client's own bucket refills at the same {bucket_rate:g}/s
  (the bench child sets shared.arm_client.ARM_WRITES_PER_SECOND; capacity and the {WRITE_HEADROOM}-token
  reserve stay as shipped), so the floor is (N - {ARM_WRITE_CAPACITY}) / {bucket_rate:g}. The factor is
  kept small on purpose: the stand-in takes about 5 s to list 5,000 instances again (50 pages), and a
  bucket refilled faster than {client} tokens per 5 s ({client / 5:.0f}/s) fills up during a relist and
  wastes writes, which ARM's real {rate:g}/s never does. In trial runs 100/s took 88 s for a floor of
  48 s, 30/s 169 s for a floor of 160 s.
  Everything else (50 ms per call, 20 ms per connection, `max_parallel`, the 10 s freshness, the 4 tries)
  is unscaled. 0 × 429 shows that the pacing alone keeps the run under ARM's limit; its {WRITE_HEADROOM}-token
  reserve is {WRITE_HEADROOM / bucket_rate:.2f} s deep at {bucket_rate:g}/s ({WRITE_HEADROOM / rate:.0f} s at
  ARM's rate), so this row is the harder test of it.
- Table calls (Azurite behind the gate, the same 50 ms added, no connection cost): a sweep reads the
  night's record, claims the night (an insert that only one run can win), reads the keeps (one query) and
  saves its record twice (the keeps it honours, then its progress): 5. MailSender: read, claim, one save:
  3. A later tick of a finished night reads the record once and calls nothing else; a tick with nothing
  due calls nothing and imports no SDK. The mail row uses the default compute client (`azureml-core`).
- "stops in flight" is the peak of concurrent stop POSTs the stand-in saw. The tick with nothing due:
  "first" is the first call of both `main()`s after the functions were loaded (the loading rows give that
  cost); "warm" the median of 200 further ticks in that process. "Building the compute adapter" imports
  its SDK and makes its credential, and calls nothing.
"""
    text += estate.notes()
    for marker, note in {**KNOWN_FAILURES, **estate.KNOWN_FAILURES}.items():
        if any(marker in error for error in errors):
            text += note
    text += """\
- The limits that matter in Azure (ARM's write throttling, the function timeout) are in README.md,
  "Performance and limits".
"""
    return _rewrap(text)


def _rewrap(text: str, width: int = 106) -> str:
    """Each "- " item as one paragraph again, after the numbers went in."""
    lines = text.splitlines()
    items: list[list[str]] = []
    for line in lines:
        if line.startswith("- ") or not items or not line.startswith("  "):
            items.append([line])
        else:
            items[-1].append(line.strip())
    out = []
    for item in items:
        if item[0].startswith("- "):
            out.append(textwrap.fill(" ".join(item), width, subsequent_indent="  ", break_on_hyphens=False))
        else:
            out.extend(item)
    return "\n".join(out) + "\n"
