#!/usr/bin/env node
// A Node.js rvkvm client written from proto/ alone (proto/rvkvm/v1/*.proto
// and proto/README.md): runs S-mode RISC-V guests on an rvkvm server, as
// `rvkvm run` does, with @grpc/grpc-js and @grpc/proto-loader.
//
//   node run_hello.js [HOST:PORT] [GUEST.elf ...] [--all] [--timeout SECONDS]
//
//   HOST:PORT   a running server (`rvkvm-server --listen HOST:PORT`); without
//               one (and without RVKVM_SERVER in the environment) it starts
//               its own on a free loopback port and stops it at the end:
//               `rvkvm-server` if it is on PATH, else `$PYTHON -m rvkvm.server`
//               (PYTHON defaults to python3) in the repository
//   GUEST.elf   guests to run one after the other, each in a new VM;
//               default client/guests/hello_sbi.elf
//   --all       every bundled guest: client/guests/*.elf
//   --timeout   seconds per guest (default 60)
//
// `npm run hello` runs the hello guest, `npm run guests` every bundled guest.
//
// Per guest: a 256 MiB RAM slot at 0x80000000 gets the ELF's PT_LOAD
// segments and, in its last 64 KiB, a device tree; vCPU 0 starts at the
// entry in S-mode with a0 = hart id and a1 = the device tree. One RunStream
// serves the exits: the SBI DBCN console (and the legacy putchar) print to
// stdout, an NS16550A UART at 0x10000000 (MMIO exits) prints what the guest
// writes to its THR, and SBI SRST ends the run.
//
// Exit status: 0 when every guest shut down through SBI SRST with reason
// "none"; 1 when one stopped otherwise (a failure reason, a reset, an exit
// it cannot serve, the timeout); 2 on a usage error, a gRPC error (printed
// with the errno of its rvkvm.v1.KvmErrno detail) or a server that would
// not start.
'use strict';

const fs = require('fs');
const path = require('path');
const childProcess = require('child_process');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const REPO = path.resolve(__dirname, '..', '..');
const PROTO_ROOT = path.join(REPO, 'proto');
const GOOGLEAPIS = path.join(REPO, 'third_party', 'googleapis'); // google/rpc/*.proto
const GUESTS_DIR = path.join(REPO, 'client', 'guests');
const HELLO_GUEST = path.join(GUESTS_DIR, 'hello_sbi.elf');

const RAM_BASE = 0x80000000n;
const RAM_SIZE = 256n << 20n;
const DTB_ROOM = 0x10000n; // the device tree goes into the last 64 KiB of RAM
const DEFAULT_TIMEOUT_S = 60;
const RUN_BUDGET = 2000000; // instructions per Run, so the deadline is checked
const SERVER_START_TIMEOUT_MS = 30000;

// ONE_REG ids: KVM_REG_RISCV | KVM_REG_SIZE_U64 | class | subtype | index, the
// worked examples of proto/rvkvm/v1/kvm.proto (values of the uapi header
// arch/riscv/include/uapi/asm/kvm.h). proto-loader takes uint64 as strings.
const REG_CORE = (index) => (0x8030000002000000n | BigInt(index)).toString();
const REG_PC = REG_CORE(0); // core pc
const REG_A0 = REG_CORE(10); // core a0
const REG_A1 = REG_CORE(11); // core a1
// sbi_ext DBCN (KVM_RISCV_SBI_EXT_DBCN = 9); decimal strings: proto-loader misreads "0x..."
const REG_SBI_EXT_DBCN = 0x8030000008000009n.toString();

const KVM_SYSTEM_EVENT_SHUTDOWN = 1;
const SBI_EXT_0_1_CONSOLE_PUTCHAR = 0x01n;
const SBI_EXT_DBCN = 0x4442434en;
const DBCN_CONSOLE_WRITE = 0n;
const DBCN_CONSOLE_READ = 1n;
const DBCN_CONSOLE_WRITE_BYTE = 2n;
const SBI_SUCCESS = 0n;
const SBI_ERR_INVALID_PARAM = -3n;
const SBI_ERR_NOT_SUPPORTED = -2n;
const U64_MASK = (1n << 64n) - 1n;

// NS16550A at QEMU virt's address (the bundled uart guest's)
const UART_BASE = 0x10000000n;
const UART_SIZE = 0x100n;
const UART_CLOCK = 3686400;

// ---------------------------------------------------------------------------
// gRPC

const LOADER_OPTIONS = {
  includeDirs: [PROTO_ROOT, GOOGLEAPIS],
  keepCase: true, // field names as in the .proto (vm_id, not vmId)
  longs: String, // 64-bit integers as decimal strings (-> BigInt here)
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true, // Exit.kind / Completion.kind name the field that is set
};

function loadKvmService() {
  const definition = protoLoader.loadSync('rvkvm/v1/kvm.proto', LOADER_OPTIONS);
  return grpc.loadPackageDefinition(definition).rvkvm.v1.Kvm;
}

// google.rpc.Status and rvkvm.v1.KvmErrno, to read the errno of a failed call
// from its `grpc-status-details-bin` trailer (proto/rvkvm/v1/errors.proto).
let errorTypes = null;
function loadErrorTypes() {
  if (errorTypes === null) {
    const root = new protobuf.Root();
    root.resolvePath = (origin, target) => {
      for (const dir of [PROTO_ROOT, GOOGLEAPIS]) {
        const candidate = path.join(dir, target);
        if (fs.existsSync(candidate)) return candidate;
      }
      return protobuf.util.path.resolve(origin, target);
    };
    root.loadSync('rvkvm/v1/errors.proto', { keepCase: true });
    errorTypes = {
      Status: root.lookupType('google.rpc.Status'),
      KvmErrno: root.lookupType('rvkvm.v1.KvmErrno'),
    };
  }
  return errorTypes;
}

const KVM_ERRNO_TYPE_URL = 'type.googleapis.com/rvkvm.v1.KvmErrno';

// The KvmErrno detail of a failed call, or null (a transport failure has none).
function kvmErrnoOf(err) {
  const raw = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!raw.length) return null;
  const { Status, KvmErrno } = loadErrorTypes();
  const status = Status.decode(raw[0]);
  const detail = status.details.find((d) => d.type_url === KVM_ERRNO_TYPE_URL);
  return detail ? KvmErrno.toObject(KvmErrno.decode(detail.value), { longs: String }) : null;
}

class RpcError extends Error {
  constructor(method, err) {
    const kvmErrno = kvmErrnoOf(err);
    const errnoText = kvmErrno ? ` [${kvmErrno.name} (${kvmErrno.errno})]` : '';
    super(`${method}: ${grpc.status[err.code]}: ${err.details}${errnoText}`);
    this.code = err.code;
    this.errno = kvmErrno ? kvmErrno.errno : null;
  }
}

class KvmClient {
  constructor(address) {
    const Kvm = loadKvmService();
    this.stub = new Kvm(address, grpc.credentials.createInsecure());
  }

  call(method, request) {
    return new Promise((resolve, reject) => {
      this.stub[method](request, (err, response) => {
        if (err) reject(new RpcError(method, err));
        else resolve(response);
      });
    });
  }

  // A RunStream session: run(request) sends one RunRequest and resolves with
  // the Exit the server answers it with.
  runStream() {
    const call = this.stub.RunStream();
    const waiting = [];
    const ready = [];
    let failure = null;
    call.on('data', (exit) => {
      const w = waiting.shift();
      if (w) w.resolve(exit);
      else ready.push(exit);
    });
    const fail = (err) => {
      failure = err;
      while (waiting.length) waiting.shift().reject(err);
    };
    call.on('error', (err) => fail(new RpcError('RunStream', err)));
    call.on('end', () => fail(failure || new Error('RunStream: the server ended the stream')));
    return {
      run(request) {
        if (failure) return Promise.reject(failure);
        call.write(request);
        if (ready.length) return Promise.resolve(ready.shift());
        return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
      },
      close() {
        failure = failure || new Error('RunStream: closed');
        call.end();
      },
    };
  }

  close() {
    this.stub.close();
  }
}

// ---------------------------------------------------------------------------
// a server of our own when none is given

// Starts `rvkvm-server --listen 127.0.0.1:0` (or `$PYTHON -m rvkvm.server ...`) and
// resolves with { address, stop() } once it prints "... listening on ADDR".
function startServer() {
  const onPath = (cmd) => (process.env.PATH || '').split(path.delimiter)
    .some((dir) => dir && fs.existsSync(path.join(dir, cmd)));
  const args = ['--listen', '127.0.0.1:0', '--log-level', 'warning'];
  const [cmd, argv] = onPath('rvkvm-server')
    ? ['rvkvm-server', args]
    : [process.env.PYTHON || 'python3', ['-m', 'rvkvm.server', ...args]];
  const child = childProcess.spawn(cmd, argv, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  const stop = () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM'); };
  process.on('exit', stop); // whatever ends this process ends the server
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => { stop(); process.exit(128 + (signal === 'SIGINT' ? 2 : 15)); });
  }
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { stop(); reject(new Error(`${cmd} did not start in time`)); },
      SERVER_START_TIMEOUT_MS);
    child.on('error', (err) => { clearTimeout(timer); reject(new Error(`cannot start ${cmd}: ${err.message}`)); });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited (${code}) before listening: ${stderr.trim().split('\n').pop() || ''}`));
    });
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout.resume();
        resolve({ address: m[1], stop });
      }
    });
  });
}

// ---------------------------------------------------------------------------
// ELF64 (little-endian RISC-V): PT_LOAD segments and the entry point

function parseElf(buf) {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw new Error('not an ELF file');
  if (buf[4] !== 2 || buf[5] !== 1) throw new Error('not a little-endian ELF64 file');
  if (buf.readUInt16LE(18) !== 243) throw new Error('not a RISC-V ELF (e_machine != EM_RISCV)');
  const entry = buf.readBigUInt64LE(24);
  const phoff = Number(buf.readBigUInt64LE(32));
  const phentsize = buf.readUInt16LE(54);
  const phnum = buf.readUInt16LE(56);
  const segments = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > buf.length) throw new Error('truncated program header table');
    const type = buf.readUInt32LE(ph);
    const offset = Number(buf.readBigUInt64LE(ph + 8));
    const paddr = buf.readBigUInt64LE(ph + 24);
    const filesz = Number(buf.readBigUInt64LE(ph + 32));
    const memsz = buf.readBigUInt64LE(ph + 40);
    if (type !== 1 /* PT_LOAD */ || memsz === 0n) continue;
    if (offset + filesz > buf.length) throw new Error(`segment ${i} is outside the file`);
    segments.push({ paddr, memsz, data: buf.subarray(offset, offset + filesz) });
  }
  return { entry, segments };
}

// ---------------------------------------------------------------------------
// A minimal flattened device tree (devicetree spec v0.4, ch. 5). Values:
// string, number (one u32 cell), array of numbers (cells), true (empty
// property).

function toDtb(root) {
  const strings = [];
  const offsets = new Map();
  let stringsLen = 0;
  const body = [];
  const u32 = (...vals) => {
    const b = Buffer.alloc(4 * vals.length);
    vals.forEach((v, i) => b.writeUInt32BE(v >>> 0, 4 * i));
    return b;
  };
  const pad4 = (b) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
  const encode = (v) => {
    if (v === true) return Buffer.alloc(0);
    if (typeof v === 'string') return Buffer.from(v + '\0');
    if (typeof v === 'number') return u32(v);
    return u32(...v);
  };
  const stringOffset = (name) => {
    if (!offsets.has(name)) {
      offsets.set(name, stringsLen);
      const b = Buffer.from(name + '\0');
      strings.push(b);
      stringsLen += b.length;
    }
    return offsets.get(name);
  };
  const emit = (node) => {
    body.push(u32(1 /* FDT_BEGIN_NODE */), pad4(Buffer.from(node.name + '\0')));
    for (const [name, value] of Object.entries(node.props)) {
      const data = encode(value);
      body.push(u32(3 /* FDT_PROP */, data.length, stringOffset(name)), pad4(data));
    }
    for (const child of node.children || []) emit(child);
    body.push(u32(2 /* FDT_END_NODE */));
  };
  emit(root);
  body.push(u32(9 /* FDT_END */));
  const structBlock = Buffer.concat(body);
  const stringsBlock = Buffer.concat(strings);
  const rsvmap = Buffer.alloc(16);
  const offRsvmap = 40;
  const offStruct = offRsvmap + rsvmap.length;
  const offStrings = offStruct + structBlock.length;
  const total = offStrings + stringsBlock.length;
  const header = u32(0xd00dfeed, total, offStruct, offStrings, offRsvmap, 17, 16, 0,
    stringsBlock.length, structBlock.length);
  return Buffer.concat([header, rsvmap, structBlock, stringsBlock]);
}

function deviceTree(info) {
  const mmu = { 8: 'riscv,sv39', 9: 'riscv,sv48', 10: 'riscv,sv57' }[info.satp_mode] || 'riscv,sv39';
  const cell = (v, shift) => Number((v >> shift) & 0xffffffffn);
  return {
    name: '',
    props: { '#address-cells': 2, '#size-cells': 2, compatible: 'rvkvm,virt',
      model: 'rvkvm virtual machine' },
    children: [
      { name: 'chosen', props: { bootargs: '', 'stdout-path': `/serial@${UART_BASE.toString(16)}` } },
      { name: 'cpus',
        props: { '#address-cells': 1, '#size-cells': 0,
          'timebase-frequency': Number(BigInt(info.timebase_frequency) & 0xffffffffn) },
        children: [{
          name: 'cpu@0',
          props: { device_type: 'cpu', reg: 0, status: 'okay', compatible: 'riscv',
            'riscv,isa': info.isa, 'mmu-type': mmu },
          children: [{ name: 'interrupt-controller',
            props: { '#address-cells': 0, '#interrupt-cells': 1, 'interrupt-controller': true,
              compatible: 'riscv,cpu-intc' } }],
        }] },
      { name: `memory@${RAM_BASE.toString(16)}`,
        props: { device_type: 'memory',
          reg: [cell(RAM_BASE, 32n), cell(RAM_BASE, 0n), cell(RAM_SIZE, 32n), cell(RAM_SIZE, 0n)] } },
      { name: `serial@${UART_BASE.toString(16)}`,
        props: { compatible: 'ns16550a', 'clock-frequency': UART_CLOCK,
          reg: [cell(UART_BASE, 32n), cell(UART_BASE, 0n), 0, Number(UART_SIZE)] } },
    ],
  };
}

// ---------------------------------------------------------------------------
// devices and SBI

// A minimal NS16550A: THR writes print, LSR always reads "transmitter empty"
// (THRE | TEMT), LCR and SCR keep what is written, DLAB switches offsets 0/1
// to the divisor latch, IIR reads "no interrupt pending"; nothing is received.
class Uart {
  constructor(out) {
    this.out = out;
    this.lcr = 0;
    this.dll = 0;
    this.dlm = 0;
    this.regs = new Uint8Array(8);
  }

  read(offset) {
    const dlab = this.lcr & 0x80;
    switch (offset) {
      case 0: return dlab ? this.dll : 0; // RBR: no input
      case 1: return dlab ? this.dlm : this.regs[1]; // IER
      case 2: return 0x01; // IIR: no interrupt pending
      case 3: return this.lcr;
      case 5: return 0x60; // LSR: THRE | TEMT
      case 6: return 0xb0; // MSR: DCD | DSR | CTS
      default: return this.regs[offset] || 0; // MCR, SCR
    }
  }

  write(offset, value) {
    const dlab = this.lcr & 0x80;
    value &= 0xff;
    if (offset === 0 && dlab) this.dll = value;
    else if (offset === 0) return this.out(Buffer.from([value])); // THR
    else if (offset === 1 && dlab) this.dlm = value;
    else if (offset === 3) this.lcr = value;
    else if (offset < 8 && offset !== 2) this.regs[offset] = value; // FCR is write-only
    return Promise.resolve();
  }
}

function u64le(value) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(value) & U64_MASK);
  return b;
}

const writeOut = (data) => new Promise((resolve) => process.stdout.write(data, resolve));

// Returns [SBI error, value] for a0/a1.
async function serveSbi(sbi, read) {
  const eid = BigInt(sbi.extension_id);
  const fid = BigInt(sbi.function_id);
  const args = sbi.args.map((a) => BigInt(a));
  while (args.length < 6) args.push(0n);
  if (eid === SBI_EXT_DBCN) {
    if (fid === DBCN_CONSOLE_WRITE) {
      const numBytes = args[0];
      const base = args[1] | (args[2] << 64n); // base_addr_lo | base_addr_hi (0 on rv64)
      let data;
      try {
        data = await read(base, numBytes);
      } catch (err) {
        return [SBI_ERR_INVALID_PARAM, 0n];
      }
      await writeOut(data);
      return [SBI_SUCCESS, numBytes];
    }
    if (fid === DBCN_CONSOLE_READ) return [SBI_SUCCESS, 0n]; // no console input
    if (fid === DBCN_CONSOLE_WRITE_BYTE) {
      await writeOut(Buffer.from([Number(args[0] & 0xffn)]));
      return [SBI_SUCCESS, 0n];
    }
  } else if (eid === SBI_EXT_0_1_CONSOLE_PUTCHAR) {
    await writeOut(Buffer.from([Number(args[0] & 0xffn)]));
    return [SBI_SUCCESS, 0n];
  }
  return [SBI_ERR_NOT_SUPPORTED, 0n];
}

// ---------------------------------------------------------------------------
// the VMM: one guest in one VM

// Runs one guest; resolves with 0 (clean shutdown) or 1 (any other stop).
async function runGuest(kvm, info, guestPath, timeoutS) {
  const elf = parseElf(fs.readFileSync(guestPath));
  const maxTransfer = Number(BigInt(info.limits ? info.limits.max_transfer : 0)) || 65536;
  const { vm_id } = await kvm.call('CreateVm', { abi_profile: '' });
  try {
    // userspace_addr 0: the server owns the memory
    await kvm.call('SetUserMemoryRegion', { vm_id, slot: 0, flags: 0,
      guest_phys_addr: RAM_BASE.toString(), memory_size: RAM_SIZE.toString(), userspace_addr: '0' });

    const write = async (gpa, data) => {
      for (let off = 0; off < data.length; off += maxTransfer) {
        await kvm.call('WriteMemory', { vm_id, gpa: (gpa + BigInt(off)).toString(),
          data: data.subarray(off, off + maxTransfer) });
      }
    };
    const read = async (gpa, size) => {
      const parts = [];
      for (let off = 0n; off < size; off += BigInt(maxTransfer)) {
        const n = size - off < BigInt(maxTransfer) ? size - off : BigInt(maxTransfer);
        parts.push((await kvm.call('ReadMemory', { vm_id, gpa: (gpa + off).toString(),
          size: n.toString() })).data);
      }
      return Buffer.concat(parts);
    };

    for (const seg of elf.segments) {
      if (seg.paddr < RAM_BASE || seg.paddr + seg.memsz > RAM_BASE + RAM_SIZE) {
        throw new Error(`${guestPath}: segment at 0x${seg.paddr.toString(16)} is outside RAM`);
      }
      await write(seg.paddr, seg.data);
      const bss = Number(seg.memsz) - seg.data.length;
      if (bss > 0) await write(seg.paddr + BigInt(seg.data.length), Buffer.alloc(bss));
    }
    const dtbAddr = RAM_BASE + RAM_SIZE - DTB_ROOM;
    await write(dtbAddr, toDtb(deviceTree(info)));

    const vcpu = { vm_id, vcpu_id: 0 };
    await kvm.call('CreateVcpu', vcpu);
    // DBCN is off on a new vCPU (as in KVM): the VMM turns it on before the first Run.
    await kvm.call('SetOneReg', { vcpu, id: REG_SBI_EXT_DBCN, value: u64le(1) });
    // a new vCPU is in S-mode (core mode = 1); Linux boot protocol: pc, a0 = hart id, a1 = DTB
    await kvm.call('SetOneReg', { vcpu, id: REG_PC, value: u64le(elf.entry) });
    await kvm.call('SetOneReg', { vcpu, id: REG_A0, value: u64le(0) });
    await kvm.call('SetOneReg', { vcpu, id: REG_A1, value: u64le(dtbAddr) });

    return await runLoop(kvm, vcpu, read, new Uart(writeOut), Date.now() + timeoutS * 1000);
  } finally {
    await kvm.call('DestroyVm', { vm_id }).catch(() => {});
  }
}

async function runLoop(kvm, vcpu, read, uart, deadline) {
  const stream = kvm.runStream();
  try {
    let completion = null;
    for (;;) {
      const request = { vcpu, budget: RUN_BUDGET, idle_timeout_ms: 100 };
      if (completion) request.completion = completion;
      const exit = await stream.run(request);
      completion = null;
      switch (exit.kind) {
        case 'riscv_sbi': {
          const ret = await serveSbi(exit.riscv_sbi, read);
          completion = { riscv_sbi: { error: ret[0].toString(), value: (ret[1] & U64_MASK).toString() } };
          break;
        }
        case 'mmio': {
          // the access has not happened: a store is ours to do, a load's value
          // goes back in the next Run's completion (unserved addresses read 0)
          const { phys_addr, len, is_write, data } = exit.mmio;
          const addr = BigInt(phys_addr);
          const onUart = addr >= UART_BASE && addr < UART_BASE + UART_SIZE;
          const offset = Number(addr - UART_BASE);
          if (is_write) {
            if (onUart) await uart.write(offset, data[0]);
          } else {
            const value = Buffer.alloc(len);
            if (onUart) value[0] = uart.read(offset);
            completion = { mmio: { data: value } };
          }
          break;
        }
        case 'intr':
          if (Date.now() >= deadline) {
            process.stderr.write('run_hello: timed out\n');
            return 1;
          }
          break;
        case 'system_event': {
          const ev = exit.system_event;
          const reason = ev.data.length ? BigInt(ev.data[0]) : 0n;
          if (ev.type === KVM_SYSTEM_EVENT_SHUTDOWN && reason === 0n) return 0;
          process.stderr.write(`run_hello: system event ${ev.type} with reason ${reason}\n`);
          return 1;
        }
        default:
          process.stderr.write(`run_hello: unhandled exit ${exit.reason} (${exit.kind}): ` +
            `${JSON.stringify(exit[exit.kind])}\n`);
          return 1;
      }
    }
  } finally {
    stream.close();
  }
}

// ---------------------------------------------------------------------------
// command line

const USAGE = 'usage: node run_hello.js [HOST:PORT] [GUEST.elf ...] [--all] [--timeout SECONDS]\n';

function bundledGuests() {
  return fs.readdirSync(GUESTS_DIR).filter((n) => n.endsWith('.elf')).sort()
    .map((n) => path.join(GUESTS_DIR, n));
}

async function main(argv) {
  const positional = [];
  let timeoutS = DEFAULT_TIMEOUT_S;
  let all = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--timeout') timeoutS = Number(argv[++i]);
    else if (argv[i] === '--all') all = true;
    else if (argv[i] === '--help' || argv[i] === '-h') {
      process.stdout.write(USAGE);
      return 0;
    } else if (argv[i].startsWith('-')) {
      process.stderr.write(`run_hello: unknown option ${argv[i]}\n${USAGE}`);
      return 2;
    } else positional.push(argv[i]);
  }
  if (!(timeoutS > 0)) {
    process.stderr.write(`run_hello: --timeout needs a positive number of seconds\n${USAGE}`);
    return 2;
  }
  let address = process.env.RVKVM_SERVER || null;
  if (positional.length && /^[^/\\]*:\d+$/.test(positional[0]) && !fs.existsSync(positional[0])) {
    address = positional.shift();
  }
  const guests = all ? bundledGuests() : positional;
  if (!guests.length) guests.push(HELLO_GUEST);
  for (const g of guests) {
    if (!fs.existsSync(g)) {
      process.stderr.write(`run_hello: ${g}: no such file\n`);
      return 2;
    }
  }

  let server = null;
  if (address === null) {
    server = await startServer();
    address = server.address;
  }
  const kvm = new KvmClient(address);
  try {
    const info = await kvm.call('GetHostInfo', {});
    let status = 0;
    for (const guest of guests) {
      if (guests.length > 1) await writeOut(`==> ${path.relative(process.cwd(), guest)}\n`);
      status = Math.max(status, await runGuest(kvm, info, guest, timeoutS));
    }
    return status;
  } finally {
    kvm.close();
    if (server) server.stop();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (err) => {
      process.stderr.write(`run_hello: ${err.message}\n`);
      process.exitCode = 2;
    },
  );
}

module.exports = { parseElf, toDtb, deviceTree, kvmErrnoOf, Uart };
