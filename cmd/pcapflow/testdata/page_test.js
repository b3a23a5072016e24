// Drives the page in Chromium (playwright-core): run by TestServePage.
//   node page_test.js BASE_URL EXPECTED_FLOW1_PCAP GROWN_BASE_URL [SCREENSHOT_DIR]
// GROWN_BASE_URL serves an index of a capture that grew after it was
// indexed: the page shows the warnings the command line prints.
// Exits 1 with a message at the first check that fails.
const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");

const [base, flow1Pcap, grownBase, shots] = process.argv.slice(2);
function check(ok, msg) {
  if (!ok) { console.error("FAIL: " + msg); process.exit(1); }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 }, acceptDownloads: true });
  page.on("pageerror", (e) => check(false, "script error: " + e.message));

  // A filter and a sort in the URL: the table shows those flows.
  await page.goto(base + "/?q=tcp&sort=bytes&rev=1");
  await page.waitForSelector("#rows tr");
  const ids = await page.$$eval("#rows tr", (trs) => trs.map((tr) => tr.dataset.id));
  check(ids.length === 10, "tcp: " + ids.length + " rows, want 10");
  check(ids[0] === "2", "sorted by bytes, reversed: first flow " + ids[0] + ", want 2");
  const summary = await page.textContent("#summary");
  check(summary.startsWith("10 flows, 46 packets"), "summary: " + summary);
  check(await page.isHidden("#warnings"), "warnings shown for a capture with none");
  // The timeline comes from its own request, after the table's: wait
  // for its bars rather than look once (a loaded machine drew the table
  // first and failed here).
  await page.waitForSelector("#timeline rect.bar", { state: "attached" }).catch(() => check(false, "no timeline bars"));
  if (shots) await page.screenshot({ path: path.join(shots, "serve-table.png") });

  // A bad filter: the caret under the fault, the URL keeps the filter.
  await page.fill("#q", "host 10.0.0.1 and port");
  await page.press("#q", "Enter");
  await page.waitForSelector("#qerr:not([hidden])");
  const err = await page.textContent("#qerr");
  check(err.includes("^") && err.includes("port"), "error box: " + err);
  check(err.split("\n")[1].indexOf("^") === 22, "caret at " + err.split("\n")[1].indexOf("^") + ", want 22");
  check(decodeURIComponent(page.url()).includes("q=host 10.0.0.1 and port") || page.url().includes("q=host+10.0.0.1+and+port"), "URL: " + page.url());

  // The keyboard: / focuses the filter, Enter runs it, j and Enter open
  // the second row.
  await page.evaluate(() => document.activeElement.blur());
  await page.keyboard.press("/");
  check(await page.evaluate(() => document.activeElement.id) === "q", "/ does not focus the filter");
  await page.fill("#q", "tcp port 25");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelectorAll("#rows tr").length === 4);
  await page.evaluate(() => document.activeElement.blur());
  await page.keyboard.press("j");
  await page.keyboard.press("j");
  const second = await page.$eval("#rows tr:nth-child(2)", (tr) => tr.dataset.id);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#detail:not([hidden])");
  check((await page.textContent("#dtitle")) === "flow " + second, "j j Enter opened " + (await page.textContent("#dtitle")) + ", want the second row, flow " + second);
  await page.keyboard.press("Escape");
  check(await page.isHidden("#detail"), "Esc did not close the detail");

  // A flow in the URL: its detail and its conversation as Follow shows it.
  await page.goto(base + "/?q=" + encodeURIComponent("flow 1") + "&flow=1");
  await page.waitForSelector("#follow span.a");
  const a = await page.textContent("#follow span.a");
  const b = await page.textContent("#follow span.b");
  check(a.startsWith("GET /index.html HTTP/1.1"), "side A: " + a.slice(0, 40));
  check(b.startsWith("HTTP/1.1 200 OK"), "side B: " + b.slice(0, 40));
  check((await page.textContent("#fields")).includes("community_id"), "fields lack community_id");
  if (shots) await page.screenshot({ path: path.join(shots, "serve-follow.png") });
  // Hex re-renders the conversation: the spans are gone until it is back.
  await page.check("#hex");
  await page.waitForFunction(() => (document.querySelector("#follow span.a")?.textContent || "").startsWith("00000000  47 45 54"));

  // The pcap of the flow, downloaded, is what extract writes.
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#dlflow")]);
  const got = fs.readFileSync(await dl.path());
  const want = fs.readFileSync(flow1Pcap);
  check(Buffer.compare(got, want) === 0, "downloaded pcap: " + got.length + " bytes, want " + want.length);

  // Captures to warn about: the list above the table says what the
  // command line says (a record cut short, the capture grown since).
  await page.goto(grownBase + "/");
  await page.waitForSelector("#warnings:not([hidden])");
  const warned = await page.textContent("#warnings");
  check(warned.includes("grew from") && warned.includes("middle of a record"), "warnings: " + warned);
  if (shots) await page.screenshot({ path: path.join(shots, "serve-warnings.png") });

  await browser.close();
  console.log("ok");
})().catch((e) => { console.error("FAIL: " + e.stack); process.exit(1); });
