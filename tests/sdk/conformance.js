// Drives Adobe's unmodified @adobe/acc-js-sdk against our SOAP router, the way an existing Campaign
// integration would. Run by tests/sdk/test_sdk_conformance.py, which also checks the databases.
//
// Usage: node conformance.js <url> <user> <password> <expiryUser> <expiryPassword> <apiToken>
// (<apiToken> is an API token of <user>, for the bearer logon modes)
//
// Output: one JSON object per line on stdout, one per step:
//   {"step": "...", "ok": true,  "value": <what the SDK returned>}
//   {"step": "...", "ok": false, "error": <the exception, CampaignException fields spelled out>}
// "ok" only says whether the SDK call threw; pytest decides whether that was the expected outcome
// (faults and the expired session are expected to throw).
//
// The session-expiry step needs the server's cooperation: after printing {"step": "expiry_ready"} the
// script waits for one line on stdin, which pytest writes once it has expired the sessions of
// <expiryUser> in the database. A second user keeps the main client's session untouched.

'use strict';

const readline = require('node:readline');
const sdk = require('@adobe/acc-js-sdk');

const [url, user, password, expiryUser, expiryPassword, apiToken] = process.argv.slice(2);
if (!url || !user || !password || !expiryUser || !expiryPassword || !apiToken) {
  console.error('usage: node conformance.js <url> <user> <password> <expiryUser> <expiryPassword> <apiToken>');
  process.exit(64);
}

// The SDK's default is 5 s; a loaded CI machine (or PostgreSQL DDL in another test) can be slower.
const CALL_TIMEOUT_MS = 30000;
const STDIN_WAIT_MS = 120000;
const STAGING = 'dem:sampleTableStg';

function emit(record) {
  process.stdout.write(JSON.stringify(record) + '\n');
}

function describeError(ex) {
  if (ex && ex.name === 'CampaignException') {
    return {
      name: ex.name, statusCode: ex.statusCode, errorCode: ex.errorCode, faultCode: ex.faultCode,
      faultString: ex.faultString, detail: ex.detail, message: ex.message, methodCall: ex.methodCall,
    };
  }
  return { name: (ex && ex.name) || typeof ex, message: String((ex && ex.stack) || ex) };
}

async function step(name, fn) {
  try {
    const value = await fn();
    emit({ step: name, ok: true, value: value === undefined ? null : value });
    return value;
  } catch (ex) {
    emit({ step: name, ok: false, error: describeError(ex) });
    return undefined;
  }
}

// Resolves with the next stdin line, or rejects after `ms`.
function nextStdinLine(rl, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line on stdin within ${ms} ms`)), ms);
    rl.once('line', (line) => { clearTimeout(timer); resolve(line); });
    rl.once('close', () => { clearTimeout(timer); reject(new Error('stdin closed')); });
  });
}

async function connect(login, secret) {
  const cnx = sdk.ConnectionParameters.ofUserAndPassword(url, login, secret, { timeout: CALL_TIMEOUT_MS });
  return sdk.init(cnx);
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin });
  emit({ step: 'sdk', ok: true, value: sdk.getSDKVersion() });

  const client = await connect(user, password);
  const NLWS = client.NLWS;

  await step('logon', async () => {
    await client.logon();
    return {
      isLogged: client.isLogged(),
      operator: client.application.operator.login,
      buildNumber: client.application.buildNumber,
      instanceName: client.application.instanceName,
    };
  });

  // JSON ("SimpleJson") form: the SDK builds <sampleTableStg xtkschema=... testcol1=... testcol2=.../>.
  await step('ingest_json', () => NLWS.xtkSession.ingest({ xtkschema: STAGING, testcol1: 'json1', testcol2: 'json2' }));

  // XML form with a caller-supplied key: no UUID comes back.
  await step('ingest_xml_key', () => NLWS.xml.xtkSession.ingest(sdk.DomUtil.parse(
    '<sampleTableStg xtkschema="dem:sampleTableStg" _key="@id" id="ABC12345" testcol1="A"/>')));

  // Partial update of the staged key: only testcol2 is sent, testcol1 must stay "A".
  await step('ingest_ext_update', () => NLWS.xtkSession.ingestExt(
    { xtkschema: STAGING, _key: '@id', id: 'ABC12345', testcol2: 'B' }));

  await step('ingest_delete_setup', () => NLWS.xml.xtkSession.ingest(sdk.DomUtil.parse(
    '<sampleTableStg xtkschema="dem:sampleTableStg" _key="@id" id="DEL00001" testcol1="doomed"/>')));
  await step('ingest_ext_delete', () => NLWS.xtkSession.ingestExt(
    { xtkschema: STAGING, _key: '@id', id: 'DEL00001', _operation: 'delete' }));

  // Two generated keys and one supplied: "uuid1,uuid2," (empty entry for the supplied id).
  await step('ingest_collection', () => NLWS.xml.xtkSession.ingest(sdk.DomUtil.parse(
    '<sampleTableStg-collection xtkschema="dem:sampleTableStg">'
    + '<sampleTableStg testcol1="coll1"/>'
    + '<sampleTableStg testcol1="coll2" testcol2="x"/>'
    + '<sampleTableStg _key="@id" id="COLL0003" testcol1="coll3"/>'
    + '</sampleTableStg-collection>')));

  // Write goes to the source schema, straight to the cloud table.
  await step('write', () => NLWS.xtkSession.write({ xtkschema: 'dem:sampleTable', id: 'W1', testcol1: 'w' }));

  // An unknown attribute: a SOAP fault with HTTP 500, which the SDK turns into a CampaignException.
  await step('fault_unknown_attribute', () => NLWS.xtkSession.ingest(
    { xtkschema: STAGING, testcol1: 'never stored', nosuchattr: 'boom' }));

  // The main session must still work after a fault.
  await step('ingest_after_fault', () => NLWS.xtkSession.ingest({ xtkschema: STAGING, testcol1: 'after fault' }));

  // Reading back with xtk:queryDef#ExecuteQuery (the SDK first fetches the xtk:queryDef schema).
  const query = (queryDef) => NLWS.xtkQueryDef.create(queryDef).executeQuery();
  await step('query_select_paged', () => query({
    schema: STAGING, operation: 'select', lineCount: 2, startLine: 1,
    select: { node: [{ expr: '@testcol1' }, { expr: '@testcol2', alias: '@second' }] },
    where: { condition: [{ expr: "@testcol1 LIKE 'coll%'", boolOperator: 'OR' }, { expr: "@testcol1 = 'A'" }] },
    orderBy: { node: [{ expr: '@testcol1', sortDesc: true }] },
  }));
  await step('query_get', () => query({
    schema: 'dem:sampleTable', operation: 'get', select: { node: [{ expr: '@id' }, { expr: 'Upper(@testcol1)', alias: '@upper' }] },
    where: { condition: [{ expr: "@id = 'W1'" }] },
  }));
  await step('query_get_if_exists_miss', () => query({
    schema: 'dem:sampleTable', operation: 'getIfExists', select: { node: [{ expr: '@id' }] },
    where: { condition: [{ expr: "@id = 'NOPE'" }] },
  }));
  await step('query_get_miss', () => query({
    schema: 'dem:sampleTable', operation: 'get', select: { node: [{ expr: '@id' }] },
    where: { condition: [{ expr: "@id = 'NOPE'" }] },
  }));
  await step('query_count', () => query({ schema: STAGING, operation: 'count', where: { condition: [{ expr: '@delete = 0' }] } }));
  await step('query_empty_select', () => query({
    schema: STAGING, operation: 'select', select: { node: [{ expr: '@id' }] }, where: { condition: [{ expr: "@id = 'NOPE'" }] },
  }));
  await step('query_link', () => query({
    schema: 'cus:contact', operation: 'select', select: { node: [{ expr: '@email' }, { expr: '[company/@name]' }] },
    where: { condition: [{ expr: "[company/@city] = 'Paris'" }] },
  }));
  await step('query_bad_attribute', () => query({ schema: STAGING, operation: 'select', select: { node: [{ expr: '@nosuch' }] } }));

  // Expired session: a second client, logged on as another user whose sessions pytest expires.
  const expiring = await connect(expiryUser, expiryPassword);
  await step('expiry_logon', async () => {
    await expiring.logon();
    return expiring.NLWS.xtkSession.ingest({ xtkschema: STAGING, testcol1: 'before expiry' });
  });
  emit({ step: 'expiry_ready', ok: true, value: null });
  const go = await step('expiry_wait', () => nextStdinLine(rl, STDIN_WAIT_MS));
  if (go !== undefined) {
    await step('session_expired', () => expiring.NLWS.xtkSession.ingest(
      { xtkschema: STAGING, testcol1: 'after expiry' }));
  }

  // Schemas: the compiled staging schema, the application's schema object, an unknown schema.
  await step('get_schema', async () => {
    const schema = await client.getSchema(STAGING);
    return { namespace: schema.namespace, name: schema.name, label: schema.label,
      attributes: schema.element.attribute.map((a) => [a.name, a.type]) };
  });
  await step('application_get_schema', async () => {
    const schema = await client.application.getSchema('dem:sampleTable');
    return { id: schema.id, rootLabel: schema.root.label, mappingType: schema.mappingType,
      children: schema.root.children.map((c) => c.name), keyFields: schema.root.keys.id.fields.map((f) => f.name) };
  });
  await step('get_schema_unknown', () => client.getSchema('dem:nothing'));

  // Options: getOption reads value + type; setOption writes an xtk:option document with Write.
  await step('get_option', () => client.getOption('XtkDatabaseId'));
  await step('get_option_unknown', () => client.getOption('NoSuchOption', false));
  await step('set_option', async () => {
    await client.setOption('ConformanceOption', 'set by the SDK');
    await client.clearOptionCache();
    return client.getOption('ConformanceOption', false);
  });

  // The plain pages: /r/test (anonymous) and /nl/jsp/ping.jsp.
  await step('test', async () => {
    const anonymous = await sdk.init(sdk.ConnectionParameters.ofAnonymousUser(url, { timeout: CALL_TIMEOUT_MS }));
    return anonymous.test();
  });
  await step('ping', () => client.ping());

  // Logon modes. BearerTokenLogon exchanges an API token for a session, as Logon does.
  const bearer = await sdk.init(sdk.ConnectionParameters.ofBearerToken(url, apiToken, { timeout: CALL_TIMEOUT_MS }));
  await step('bearer_logon', async () => {
    await bearer.logon();
    const uuid = await bearer.NLWS.xtkSession.ingest({ xtkschema: STAGING, testcol1: 'bearer' });
    return { isLogged: bearer.isLogged(), operator: bearer.application.operator.login, uuid };
  });
  await step('bearer_logoff', async () => { await bearer.logoff(); return { isLogged: bearer.isLogged() }; });
  await step('bearer_logon_forged', async () => {
    const forged = await sdk.init(sdk.ConnectionParameters.ofBearerToken(url, 'forged-token', { timeout: CALL_TIMEOUT_MS }));
    await forged.logon();
    return 'unexpected success';
  });
  // IMS style: no logon call, "Authorization: Bearer" on every call; sessionInfo makes the SDK read
  // GetUserInfo and /r/test instead of Logon's answer.
  await step('ims_bearer', async () => {
    const ims = await sdk.init(sdk.ConnectionParameters.ofImsBearerToken(url, apiToken,
      { timeout: CALL_TIMEOUT_MS, sessionInfo: true }));
    await ims.logon();
    const uuid = await ims.NLWS.xtkSession.ingest({ xtkschema: STAGING, testcol1: 'ims bearer' });
    const info = ims.getSessionInfo();
    const result = { isLogged: ims.isLogged(), login: info.userInfo.login, build: info.serverInfo.buildNumber, uuid };
    await ims.logoff();
    return result;
  });
  await step('ims_bearer_forged', async () => {
    const ims = await sdk.init(sdk.ConnectionParameters.ofImsBearerToken(url, 'forged-token', { timeout: CALL_TIMEOUT_MS }));
    await ims.logon();
    return ims.NLWS.xtkSession.ingest({ xtkschema: STAGING, testcol1: 'forged ims' });
  });
  // "login/password" as the session token (the server allows it for this run: SOAP_ALLOW_USER_PASSWORD).
  await step('session_token_user_password', async () => {
    const c = await sdk.init(sdk.ConnectionParameters.ofSessionToken(url, `${user}/${password}`, { timeout: CALL_TIMEOUT_MS }));
    await c.logon();
    return c.NLWS.xtkSession.ingest({ xtkschema: STAGING, testcol1: 'user/password' });
  });
  await step('session_token_user_password_forged', async () => {
    const c = await sdk.init(sdk.ConnectionParameters.ofSessionToken(url, `${user}/wrong`, { timeout: CALL_TIMEOUT_MS }));
    await c.logon();
    return c.NLWS.xtkSession.ingest({ xtkschema: STAGING, testcol1: 'wrong password' });
  });

  // Logoff revokes the session on the server: the old tokens, replayed by a fresh client, are refused.
  const revokedSession = client._sessionToken;
  const revokedSecurity = client._securityToken;
  await step('logoff', async () => {
    await client.logoff();
    return { isLogged: client.isLogged() };
  });
  await step('token_after_logoff', async () => {
    const replay = await sdk.init(sdk.ConnectionParameters.ofSessionAndSecurityToken(
      url, revokedSession, revokedSecurity, { timeout: CALL_TIMEOUT_MS }));
    await replay.logon(); // no HTTP call: just adopts the tokens
    return replay.NLWS.xtkSession.ingest({ xtkschema: STAGING, testcol1: 'after logoff' });
  });

  emit({ step: 'done', ok: true, value: null });
  rl.close();
}

main().then(
  () => process.exit(0),
  (ex) => { console.error('FATAL', (ex && ex.stack) || ex); process.exit(2); },
);
