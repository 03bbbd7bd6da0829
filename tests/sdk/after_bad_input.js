// Adobe's unmodified @adobe/acc-js-sdk, run after a corpus of bad requests reached the same server
// worker (tests/sdk/test_sdk_after_bad_input.py): every call of an ordinary integration must succeed.
//
// Usage: node after_bad_input.js <url> <user> <password>
// Output: one JSON line per step, {"step", "ok", "value"} or {"step", "ok": false, "error"}.

'use strict';

const sdk = require('@adobe/acc-js-sdk');

const [url, user, password] = process.argv.slice(2);
if (!url || !user || !password) {
  console.error('usage: node after_bad_input.js <url> <user> <password>');
  process.exit(64);
}
const STAGING = 'dem:sampleTableStg';

async function step(name, fn) {
  try {
    const value = await fn();
    process.stdout.write(JSON.stringify({ step: name, ok: true, value: value === undefined ? null : value }) + '\n');
  } catch (ex) {
    const error = { name: ex && ex.name, message: String((ex && ex.message) || ex), detail: ex && ex.detail,
                    faultString: ex && ex.faultString };
    process.stdout.write(JSON.stringify({ step: name, ok: false, error }) + '\n');
  }
}

async function main() {
  const cnx = sdk.ConnectionParameters.ofUserAndPassword(url, user, password, { timeout: 30000 });
  const client = await sdk.init(cnx);
  const NLWS = client.NLWS;
  await step('logon', async () => { await client.logon(); return client.isLogged(); });
  await step('ingest_json', () => NLWS.xtkSession.ingest({ xtkschema: STAGING, testcol1: 'sdk json' }));
  await step('ingest_xml', () => NLWS.xml.xtkSession.ingest(sdk.DomUtil.parse(
    '<sampleTableStg xtkschema="dem:sampleTableStg" _key="@id" id="SDK00001" testcol1="sdk xml"/>')));
  await step('ingest_ext', () => NLWS.xtkSession.ingestExt({ xtkschema: STAGING, _key: '@id', id: 'SDK00001',
                                                            testcol2: 'sdk ext' }));
  await step('write', () => NLWS.xtkSession.write({ xtkschema: 'dem:sampleTable', id: 'SDKW0001', testcol1: 'w' }));
  await step('logoff', async () => { await client.logoff(); return client.isLogged(); });
}

main().then(() => process.exit(0), (ex) => { console.error(ex); process.exit(1); });
