// Drives the web page in Debian's Chromium (see .ci/browser.sh): the demo banner, an
// upload with boxes and triplets drawn, hover, adding a verb through the page and seeing
// it scored, teaching it from a pair on screen, the vocabulary's row sources, no console
// errors (a CSP violation would be one); then a screenshot.
const { chromium } = require("playwright-core");

const [base, imagePath, screenshotPath] = process.argv.slice(2);
let passed = 0;
function check(condition, message) {
  if (!condition) throw new Error(`browser check failed: ${message}`);
  passed += 1;
}

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 950 } });
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${base}/`);
    await page.waitForFunction(() => !document.querySelector("#model").textContent.includes("loading"));
    check(await page.isVisible("#demo-banner"), "the demo model's banner is shown");

    await page.setInputFiles("#file", imagePath);
    await page.waitForSelector("#triplets li[data-pair]");
    const pairs = Number(await page.getAttribute("#canvas", "data-pairs"));
    check(pairs > 0, `pairs drawn: ${pairs}`);
    const items = await page.$$eval("#triplets li[data-pair]", (lis) => lis.length);
    check(items >= pairs, `a triplet per line: ${items}`);
    await page.hover("#triplets li[data-pair]");
    check(await page.$eval("#triplets li[data-pair]", (li) => li.classList.contains("active")), "hover highlights the pair");

    // Filtering by score hides pairs below it.
    await page.$eval("#threshold", (el) => { el.value = "2"; el.dispatchEvent(new Event("input")); });
    check(await page.getAttribute("#canvas", "data-pairs") === "0", "a score filter of 2 hides every pair");
    await page.$eval("#threshold", (el) => { el.value = "0"; el.dispatchEvent(new Event("input")); });

    await page.fill("#add-verb [name=name]", "juggle");
    await page.fill("#add-verb [name=ing]", "juggling");
    await page.fill("#add-verb [name=objects]", "orange, apple");
    await page.click("#add-verb button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#message").textContent.includes("added"));
    await page.selectOption("#pack", "user");
    await page.waitForFunction(() => {
      const lis = [...document.querySelectorAll("#triplets li[data-pair]")];
      return lis.length > 0 && lis.every((li) => li.textContent.startsWith("juggle "));
    });
    check(true, "the new verb is scored in the next detection");

    await page.click("#triplets li[data-pair] button");
    await page.fill("#teach-verb", "juggle");
    await page.click("#teach-submit");
    await page.waitForFunction(() => document.querySelector("#message").textContent.includes("examples (1)"));
    check(true, "a pair on screen taught the verb");
    await page.waitForFunction(() => document.querySelector("#triplets li[data-pair] .why").textContent.includes("verb row: examples (1)"));
    check(true, "the explained scores show the learned verb row");

    await page.fill("#search", "juggle");
    const row = await page.$eval("#entries tbody", (t) => t.textContent);
    check(row.includes("juggle") && row.includes("examples (1)"), `vocabulary row source: ${row}`);

    await page.selectOption("#pack", "");
    await page.waitForFunction(() => {
      const status = document.querySelector("#status").textContent;
      return status !== "" && !status.includes("detecting");
    });
    await page.waitForSelector("#triplets li[data-pair]");
    await page.screenshot({ path: screenshotPath, fullPage: true });
    check(errors.length === 0, `no console errors: ${errors.join(" | ")}`);
    console.log(`browser: ${passed} passed, 0 failed (screenshot: ${screenshotPath})`);
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(String(e && e.stack || e));
  console.log(`browser: ${passed} passed, 1 failed`);
  process.exit(1);
});
