// Debian's Chromium, headless, driven by the playwright-core that `make setup` installs in
// .tools/browser (no browser download). Shared by the page scripts.

import { createRequire } from "node:module";
import path from "node:path";

/** Launches Chromium; `tools` is the .tools directory, `chromium` an optional binary path. */
export async function launch(tools, chromium) {
  const require = createRequire(path.join(tools, "browser", "package.json"));
  const { chromium: driver } = require("playwright-core");
  return driver.launch({
    executablePath: chromium || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}
