/**
 * The live dashboard in a real browser: Debian's headless Chromium (driven by playwright-core) loads
 * `GET /` from a listening server, watches the charts and tiles update while a load runs, and takes a
 * screenshot. Chromium missing is a failure, not a skip: CI installs it (.ci/run).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseServe } from '../src/server/args';
import { type RunningServer, startServer } from '../src/server/index';
import { cleanupModels, syntheticModel } from './helpers/api-model';

const CHROMIUM = '/usr/bin/chromium';
const work = mkdtempSync(join(tmpdir(), 'dashboard-'));
let server: RunningServer;
let browser: BrowserContext;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`No Chromium at ${CHROMIUM}: install it (apt-get install -y chromium), as .ci/run does.`);
  }
  const files = await syntheticModel('tiny', 5);
  // What `mlx-rerank serve` would run with these flags.
  const flags = ['--model', files.dir, '--backend', 'cpu', '--threads', '1', '--offline', '--port', '0'];
  server = await startServer(parseServe([...flags, '--shutdown-timeout', '5', '--log-level', 'silent'], {}));
  await server.loaded;
  // launchPersistentContext: the one way to give Chromium its own fresh --user-data-dir.
  browser = await chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  rmSync(work, { recursive: true, force: true });
  cleanupModels();
});

it('shows the model and machine, and its charts follow a load as it runs', async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}/`);
  await page.waitForSelector('#status.live');
  expect(await page.textContent('#model')).toContain('synthetic');
  expect(await page.textContent('#machine')).toMatch(/cores/);
  expect(await page.locator('.chart canvas').count()).toBe(7);
  const pointsAt = () => page.$eval('#chart-throughput', (e) => Number(e.getAttribute('data-points')));
  const before = await pointsAt();

  let running = true;
  const texts = Array.from({ length: 64 }, (_, i) => `document ${i} about music and water and history`);
  const load = Promise.all(
    Array.from({ length: 4 }, async () => {
      while (running) {
        await fetch(`${server.url}/rerank`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ query: 'music', texts }),
        });
      }
    }),
  );
  try {
    const tile = (id: string) =>
      `Number(document.querySelector('#tile-${id} .v').textContent.replace(/,/g, ''))`;
    await page.waitForFunction(`${tile('pairs')} > 0 && ${tile('ok')} > 0 && ${tile('p50')} > 0`, undefined, {
      timeout: 15_000,
    });
    // Three more seconds of samples: the lines are drawn through the load, not one point.
    await page.waitForFunction(
      `Number(document.querySelector('#chart-throughput').dataset.points) >= ${before + 3}`,
      undefined,
      { timeout: 15_000 },
    );
  } finally {
    running = false;
    await load;
  }
  const shot = join(process.env.DASHBOARD_SCREENSHOT_DIR ?? work, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  const png = readFileSync(shot);
  expect(png.subarray(1, 4).toString()).toBe('PNG');
  expect(png.length).toBeGreaterThan(20_000); // seven drawn charts, not a blank page
  expect(errors).toEqual([]);
});
