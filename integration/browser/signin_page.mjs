// The dev authorization server's sign-in in a real headless Chromium (Debian's), driven by
// playwright-core, as a person signing in for an MCP client would: open the authorization URL
// the client made, sign in on the login form, allow on the consent page, land on the client's
// loopback redirect URI (answered here: nothing listens there). Prints one JSON object of what
// the pages showed, the redirect URL included; screenshots to --shots DIR.
//
// node signin_page.mjs '{"url": AUTH_URL, "redirect": URI, "login": "alice", "shots": DIR, "tools": DIR}'

import path from "node:path";
import { launch } from "./launch.mjs";

const args = JSON.parse(process.argv[2]);
const browser = await launch(args.tools, args.chromium);
const out = {};
try {
  const context = await browser.newContext({ viewport: { width: 720, height: 580 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);

  // The client's loopback redirect URI: recorded, answered with a small page.
  let landed;
  await page.route((u) => u.toString().startsWith(args.redirect), (route) => {
    landed = route.request().url();
    return route.fulfill({ status: 200, contentType: "text/plain", body: "signed in; back to the client" });
  });

  await page.goto(args.url);
  await page.locator('input[name="login"]').waitFor();
  out.login_page = page.url();
  out.login_title = await page.title();
  out.login_heading = (await page.locator("h1").innerText()).trim();
  out.login_has_password = await page.locator('input[name="password"]').isVisible();
  await page.screenshot({ path: path.join(args.shots, "signin-login.png") });

  await page.fill('input[name="login"]', args.login);
  await page.fill('input[name="password"]', "any password");
  await page.click('button[type="submit"]');

  const allow = page.locator('button[value="allow"]');
  await allow.waitFor();
  out.consent_page = page.url();
  out.consent_heading = (await page.locator("h1").innerText()).trim();
  out.consent_text = (await page.locator(".card").innerText()).trim();
  await page.screenshot({ path: path.join(args.shots, "signin-consent.png") });

  await allow.click();
  await page.waitForURL((u) => u.toString().startsWith(args.redirect));
  out.redirected_to = landed ?? page.url();
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
