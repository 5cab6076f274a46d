// Drives the Swagger UI in headless Chromium as a person would: GET /list
// without a token, then Authorize with the bearer token and the same call
// again. Prints what the page sent and the statuses it showed, as JSON.
// usage: node authorize.cjs CHROMIUM PROFILE_DIR URL TOKEN
// (puppeteer-core from .it-env/node, installed by scripts/env.sh ensure_tools)
const puppeteer = require("puppeteer-core");

const [, , executablePath, profile, url, token] = process.argv;
const op = "#operations-backup-listBackups";

async function execute(page) {
  await page.click(`${op} .execute`);
  await page.waitForSelector(`${op} .live-responses-table tr.response .response-col_status`, { timeout: 60000 });
  const status = await page.$eval(`${op} .live-responses-table tr.response .response-col_status`, (e) => e.textContent.trim());
  await page.click(`${op} .btn-clear`).catch(() => {});
  await page.waitForSelector(`${op} .live-responses-table`, { hidden: true, timeout: 5000 }).catch(() => {});
  return status;
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath,
    headless: true,
    userDataDir: profile,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-quic"],
  });
  const result = { sent: [], statuses: [] };
  try {
    const page = await browser.newPage();
    page.on("request", (r) => {
      if (r.url().includes("/api/v1/list")) result.sent.push(r.headers()["authorization"] || null);
    });
    await page.goto(url, { waitUntil: "networkidle0", timeout: 30000 });
    // Open GET /api/v1/list and "Try it out".
    await page.waitForSelector(`${op} .opblock-summary`);
    await page.click(`${op} .opblock-summary`);
    await page.waitForSelector(`${op} .try-out__btn`);
    await page.click(`${op} .try-out__btn`);
    result.statuses.push(await execute(page));
    // The Authorize dialog: type the token, Authorize, Close.
    await page.click(".auth-wrapper .btn.authorize");
    await page.waitForSelector(".modal-ux input");
    await page.type(".modal-ux input", token);
    await page.click(".modal-ux .auth-btn-wrapper .btn.modal-btn.authorize");
    await page.waitForSelector(".modal-ux .auth-btn-wrapper .btn-done");
    await page.click(".modal-ux .auth-btn-wrapper .btn-done");
    await page.waitForSelector(".modal-ux", { hidden: true });
    result.statuses.push(await execute(page));
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
