// The approvals page in a real headless Chromium (Debian's), driven by playwright-core:
// sign in at the dev authorization server (OIDC code + PKCE, its login and consent forms),
// approve one request, deny another, try to approve one's own, sign out, and sign in as a
// non-approver. Prints one JSON object of what the page showed; screenshots to --shots DIR.
//
// node approvals_page.mjs '{"page": URL, "approve": ID, "deny": ID, "own": ID, "shots": DIR}'

import path from "node:path";
import { launch } from "./launch.mjs";

const args = JSON.parse(process.argv[2]);
const browser = await launch(args.tools, args.chromium);
const out = {};
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  let page = await context.newPage();
  page.setDefaultTimeout(15000);

  // The URL an MCP client is handed: not signed in yet.
  await page.goto(`${args.page}/requests/${args.approve}`);
  await page.locator("#signin").waitFor({ state: "visible" });
  await page.click("#login");

  // The authorization server's sign-in form, then its consent step.
  async function signIn(login) {
    await page.locator('input[name="login"]').waitFor();
    out[`${login}_signin_page`] = new URL(page.url()).origin;
    await page.fill('input[name="login"]', login);
    await page.fill('input[name="password"]', "any");
    await page.click('button[type="submit"]');
    const allow = page.locator('button[value="allow"]');
    // Consent is asked once per client and browser session.
    await Promise.race([
      allow.waitFor().then(() => allow.click()),
      page.waitForURL((u) => u.toString().startsWith(args.page)),
    ]);
    await page.waitForURL((u) => u.toString().startsWith(args.page));
  }
  await signIn("bob");
  out.returned_to = page.url();
  const card = (id) => page.locator(`#pending [data-request-id="${id}"]`);
  await card(args.approve).waitFor();
  out.focused = await card(args.approve).evaluate((n) => n.classList.contains("focus"));
  out.signed_in_as = (await page.locator("#who").innerText()).trim();
  out.pending_cards = await page.locator("#pending .req").count();
  out.shown_args = await card(args.approve).locator(".args").innerText();
  await page.screenshot({ path: path.join(args.shots, "approvals-page.png"), fullPage: true });

  // Approve once, with a note.
  await card(args.approve).locator(".note").fill("ok for the cleanup");
  await card(args.approve).locator('[data-action="approve-once"]').click();
  await page.locator("#message").filter({ hasText: "approved" }).waitFor();
  out.after_approve = await page.locator("#message").innerText();
  // The list is drawn again after each decision: wait for it before the next one.
  await card(args.approve).waitFor({ state: "detached" });

  // Deny, with a note.
  await card(args.deny).locator(".note").fill("not this table");
  await card(args.deny).locator('[data-action="deny"]').click();
  await page.locator("#message").filter({ hasText: "denied" }).waitFor();
  out.after_deny = await page.locator("#message").innerText();
  await card(args.deny).waitFor({ state: "detached" });

  // One's own request: refused by the service, said on the page.
  await card(args.own).locator('[data-action="approve-once"]').click();
  await page.locator("#message.err").waitFor();
  out.own = await page.locator("#message").innerText();
  out.own_still_pending = (await card(args.own).count()) === 1;
  out.decided_cards = await page.locator("#decided .req").count();
  await page.screenshot({ path: path.join(args.shots, "approvals-decided.png"), fullPage: true });

  // Sign out: the page asks to sign in again.
  await page.click('#who button');
  await page.locator("#signin").waitFor({ state: "visible" });
  out.signed_out = true;

  // A non-approver (another browser: the provider remembers bob's sign-in) is told so and
  // sees nothing to decide.
  const other = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  page = await other.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(args.page);
  await page.locator("#signin").waitFor({ state: "visible" });
  await page.click("#login");
  await signIn("alice");
  await page.waitForSelector('body[data-not-approver="true"]');
  out.alice = await page.locator("#message").innerText();
  out.alice_sees_requests = await page.locator("#main").isVisible();
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
