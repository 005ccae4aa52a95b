// The handshake over real sockets (Unix and loopback TCP): greeting bytes, fatal client errors that
// must close the connection, and the option loop staying in step across error replies.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import { TestClient } from '../support/test-client.ts';
import { startServer, TRANSPORTS, type TestServer } from '../support/server-fixture.ts';
import {
  be16,
  be64,
  clientFlags,
  CMD,
  INFO,
  infoData,
  MEMORY_FLAGS,
  OPT,
  option,
  REP,
  W,
  wire,
} from '../support/wire.ts';

const SIZE = 1024 * 1024;

describe.each(TRANSPORTS)('handshake over %s', (transport) => {
  let t: TestServer;

  beforeEach(async () => {
    t = await startServer([{ name: 'disk', description: 'test disk', device: new MemoryDevice({ size: SIZE }) }], transport);
  });
  afterEach(async () => {
    await t.stop();
  });

  it('greets with NBDMAGIC, IHAVEOPT and handshake flags 0x0003, exactly 18 bytes', async () => {
    const c = await t.connect();
    const g = await c.read(18);
    expect(g.toString('hex')).toBe(wire().u64(W.NBDMAGIC).u64(W.IHAVEOPT).u16(0x0003).build().toString('hex'));
    expect(g.subarray(0, 8).toString('latin1')).toBe('NBDMAGIC');
    expect(g.subarray(8, 16).toString('latin1')).toBe('IHAVEOPT');
    await c.expectSilence(50);
  });

  it.each([
    ['an unknown bit (0x4)', 0x00000007],
    ['the top bit', 0x80000001],
    ['every bit', 0xffffffff],
  ])('client flags with %s close the connection', async (_name, flags) => {
    const c = await t.connect();
    await c.greeting();
    c.write(clientFlags(flags));
    // The option that follows must not be answered.
    c.write(option(OPT.LIST));
    expect((await c.expectClose()).length).toBe(0);
  });

  it('client flags 0 and 1 are accepted (plain fixed newstyle)', async () => {
    for (const flags of [0, 1]) {
      const c = await t.connect();
      await c.greeting();
      c.write(clientFlags(flags));
      const replies = await c.opt(OPT.LIST);
      expect(replies.map((r) => r.type)).toEqual([REP.SERVER, REP.ACK]);
      c.destroy();
    }
  });

  it('an option length over 64 KiB disconnects without reading the data', async () => {
    const c = await t.connect();
    await c.start();
    c.write(option(0x7654321, Buffer.alloc(0), 64 * 1024 + 1));
    expect((await c.expectClose()).length).toBe(0);
  });

  it('an option of exactly 64 KiB is read, discarded and answered ERR_UNSUP', async () => {
    const c = await t.connect();
    await c.start();
    const replies = await c.opt(0x7654321, Buffer.alloc(64 * 1024, 0xaa));
    expect(replies.map((r) => [r.option, r.type])).toEqual([[0x7654321, REP.ERR_UNSUP]]);
    // Still in step.
    expect((await c.opt(OPT.LIST)).map((r) => r.type)).toEqual([REP.SERVER, REP.ACK]);
  });

  it('an option header without IHAVEOPT disconnects', async () => {
    const c = await t.connect();
    await c.start();
    c.write(wire().u64(0x1122334455667788n).u32(OPT.LIST).u32(0).build());
    expect((await c.expectClose()).length).toBe(0);
  });

  it('nbd-tester-client handshake test: unknown option 0x7654321 then ABORT gets ACK, then close', async () => {
    const c = await t.connect();
    await c.start(0x1);
    expect((await c.opt(0x7654321)).map((r) => [r.option, r.type])).toEqual([[0x7654321, REP.ERR_UNSUP]]);
    const abort = await c.opt(OPT.ABORT);
    expect(abort.map((r) => [r.option, r.type, r.payload.length])).toEqual([[OPT.ABORT, REP.ACK, 0]]);
    expect((await c.expectClose()).length).toBe(0);
  });

  it('ABORT with data is still ACKed; a client that closes without reading the ACK is harmless', async () => {
    const c = await t.connect();
    await c.start();
    c.write(option(OPT.ABORT, Buffer.from('junk')));
    c.destroy();
    const d = await t.connect();
    await d.start();
    expect((await d.opt(OPT.ABORT, Buffer.from('junk'))).map((r) => r.type)).toEqual([REP.ACK]);
    await d.expectClose();
  });

  it('LIST with data: only ERR_INVALID on the wire, then the loop continues in step', async () => {
    const c = await t.connect();
    await c.start();
    c.write(option(OPT.LIST, Buffer.from([0, 0, 0, 0])));
    const first = await c.optionReply();
    expect([first.option, first.type]).toEqual([OPT.LIST, REP.ERR_INVALID]);
    await c.expectSilence(50);
    expect((await c.opt(OPT.LIST)).map((r) => r.type)).toEqual([REP.SERVER, REP.ACK]);
  });

  it('a malformed INFO gets ERR_INVALID instead of hanging (nbd-server 3.24)', async () => {
    const c = await t.connect();
    await c.start();
    const bad = wire().u32(1000).str('disk').u16(0).build();
    expect((await c.opt(OPT.INFO, bad)).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    const { size, flags } = await c.go('disk', [INFO.BLOCK_SIZE]);
    expect([size, flags]).toEqual([BigInt(SIZE), MEMORY_FLAGS]);
  });

  it('GO: transmission starts right after the ACK, with no padding', async () => {
    const c = await t.connect();
    await c.start();
    const { replies } = await c.go('disk');
    expect(replies.at(-1)!.type).toBe(REP.ACK);
    await c.expectSilence(30);
    c.send({ type: CMD.READ, cookie: 1n, offset: 0, length: 512 });
    const r = await c.simpleReply(512);
    expect([r.error, r.cookie]).toEqual([0, 1n]);
  });

  it('EXPORT_NAME without NO_ZEROES: size, flags and 124 zero bytes, then transmission', async () => {
    const c = await t.connect();
    await c.start(0x1);
    c.write(option(OPT.EXPORT_NAME, Buffer.from('disk')));
    const reply = await c.read(134);
    expect(be64(reply, 0)).toBe(BigInt(SIZE));
    expect(be16(reply, 8)).toBe(MEMORY_FLAGS);
    expect(reply.subarray(10).equals(Buffer.alloc(124))).toBe(true);
    await c.expectSilence(30);
    c.send({ type: CMD.FLUSH, cookie: 2n });
    expect((await c.simpleReply()).error).toBe(0);
  });

  it('EXPORT_NAME with NO_ZEROES: exactly 10 bytes', async () => {
    const c = await t.connect();
    await c.start(0x3);
    c.write(option(OPT.EXPORT_NAME));
    const reply = await c.read(10);
    expect([be64(reply, 0), be16(reply, 8)]).toEqual([BigInt(SIZE), MEMORY_FLAGS]);
    await c.expectSilence(30);
    c.send({ type: CMD.FLUSH, cookie: 3n });
    expect((await c.simpleReply()).error).toBe(0);
  });

  it('EXPORT_NAME for an unknown export closes without a reply', async () => {
    const c = await t.connect();
    await c.start();
    c.write(option(OPT.EXPORT_NAME, Buffer.from('nope')));
    expect((await c.expectClose()).length).toBe(0);
  });

  it('GO for an unknown export: ERR_UNKNOWN with no REP_INFO, negotiation continues', async () => {
    const c = await t.connect();
    await c.start();
    const replies = await c.opt(OPT.GO, infoData('nope', [INFO.NAME]));
    expect(replies.map((r) => r.type)).toEqual([REP.ERR_UNKNOWN]);
    expect((await c.go('disk')).size).toBe(BigInt(SIZE));
  });

  it('options split into single bytes are reassembled', async () => {
    const c = await t.connect();
    await c.greeting();
    const bytes = Buffer.concat([clientFlags(3), option(OPT.LIST)]);
    for (let i = 0; i < bytes.length; i++) {
      c.write(bytes.subarray(i, i + 1));
      await new Promise((r) => setImmediate(r));
    }
    expect((await c.optionReply()).type).toBe(REP.SERVER);
    expect((await c.optionReply()).type).toBe(REP.ACK);
  });

  it('a client closing during the handshake (a probe) leaves the server serving others', async () => {
    for (let i = 0; i < 5; i++) {
      const probe = await TestClient.connect(t.target);
      if (i % 2 === 0) await probe.greeting();
      probe.destroy();
    }
    const c = await t.connect();
    await c.start();
    expect((await c.go('disk')).size).toBe(BigInt(SIZE));
  });
});
