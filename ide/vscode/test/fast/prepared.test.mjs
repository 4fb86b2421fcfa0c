// Prepared sessions of java debug launches (out/prepared.js): released when
// their debug session ends, or when none claims them within the timeout.
//   npm run compile && node --test test/fast/prepared.test.mjs

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

const require = createRequire(import.meta.url);
const { CLAIM_TIMEOUT_MS, PreparedSessions } = require('../../out/prepared.js');

/** PreparedSessions with a short claim timeout, recording its releases. */
function sessions(timeoutMs = 30) {
  const released = [];
  const p = new PreparedSessions(async (id, why) => {
    released.push({ id, why });
  }, timeoutMs);
  return { p, released };
}

describe('prepared sessions of java debug launches', () => {
  test('the default timeout leaves room for a project build', () => {
    assert.ok(CLAIM_TIMEOUT_MS >= 60000, `${CLAIM_TIMEOUT_MS} ms`);
    assert.equal(new PreparedSessions(async () => {}).claimTimeoutMs, CLAIM_TIMEOUT_MS);
  });

  test('not claimed within the timeout: released once, with why', async () => {
    const { p, released } = sessions(20);
    p.add('s-1');
    assert.ok(p.unclaimed('s-1'));
    await sleep(120);
    assert.deepEqual(released.map((r) => r.id), ['s-1']);
    assert.match(released[0].why, /no debug session started with it within \d+ s/);
    assert.deepEqual(p.ids(), []);
    // A debug session that starts or ends after that finds nothing to claim or release.
    assert.equal(p.claim('s-1'), false);
    assert.equal(await p.end('s-1', 'ended'), false);
    assert.equal(released.length, 1);
  });

  test('claimed: no timeout release; released when its debug session ends', async () => {
    const { p, released } = sessions(20);
    p.add('s-1');
    assert.equal(p.claim('s-1'), true);
    assert.equal(p.claim('s-1'), false, 'claimed once');
    assert.equal(p.unclaimed('s-1'), false);
    await sleep(120);
    assert.deepEqual(released, [], 'a claimed session waits for the end of its debug session');
    assert.deepEqual(p.ids(), ['s-1']);
    assert.equal(await p.end('s-1', 'debug session "x" ended'), true);
    assert.deepEqual(released, [{ id: 's-1', why: 'debug session "x" ended' }]);
    assert.equal(await p.end('s-1', 'again'), false);
    assert.equal(released.length, 1);
  });

  test('each session has its own timeout', async () => {
    const { p, released } = sessions(60);
    p.add('s-1');
    p.add('s-2');
    p.claim('s-2');
    await sleep(200);
    assert.deepEqual(released.map((r) => r.id), ['s-1']);
    assert.deepEqual(p.ids(), ['s-2']);
    p.clear();
  });

  test('ids that were never handed out are ignored', async () => {
    const { p, released } = sessions();
    assert.equal(p.claim('s-x'), false);
    assert.equal(await p.end('s-x', 'ended'), false);
    assert.deepEqual(released, []);
  });

  test('releaseAll (deactivate) releases claimed and unclaimed ones, and no timeout fires later', async () => {
    const { p, released } = sessions(40);
    p.add('s-1');
    p.add('s-2');
    p.claim('s-2');
    await p.releaseAll('the extension is deactivated');
    assert.deepEqual(released.map((r) => r.id).sort(), ['s-1', 's-2']);
    assert.ok(released.every((r) => r.why === 'the extension is deactivated'));
    assert.deepEqual(p.ids(), []);
    await sleep(150);
    assert.equal(released.length, 2);
  });

  test('clear (the backend exited) forgets without releasing', async () => {
    const { p, released } = sessions(20);
    p.add('s-1');
    p.clear();
    await sleep(100);
    assert.deepEqual(released, []);
    assert.deepEqual(p.ids(), []);
  });

  test('a failing release on timeout does not escape', async () => {
    let calls = 0;
    const p = new PreparedSessions(async () => {
      calls++;
      throw new Error('backend gone');
    }, 10);
    p.add('s-1');
    await sleep(80);
    assert.equal(calls, 1);
  });
});
