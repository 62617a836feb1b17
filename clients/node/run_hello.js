#!/usr/bin/env node
// A non-Python rvkvm client: runs an S-mode RISC-V guest (by default the
// bundled hello guest) on an rvkvm server, as client/vmm.py does.
//
//   node run_hello.js HOST:PORT [GUEST.elf] [--timeout SECONDS]
//
// It loads the ELF's PT_LOAD segments into a 256 MiB RAM slot at 0x80000000,
// writes a minimal device tree to the end of RAM, boots vCPU 0 (pc = entry,
// a0 = hart id, a1 = DTB), and runs it over one RunStream, serving the SBI
// DBCN console (and the legacy putchar) by printing to stdout.
//
// Exit status: 0 on an SBI SRST shutdown with reason "none"; 1 on any other
// stop (other shutdown reason, reset, unhandled exit, timeout); 2 on a usage
// or gRPC error.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const REPO = path.resolve(__dirname, '..', '..');
const PROTO_ROOT = path.join(REPO, 'proto');
const HELLO_GUEST = path.join(REPO, 'client', 'guests', 'hello_sbi.elf');

const RAM_BASE = 0x80000000n;
const RAM_SIZE = 256n << 20n;
const DTB_ROOM = 0x10000n; // the device tree goes into the last 64 KiB of RAM
const DEFAULT_TIMEOUT_S = 60;
const RUN_BUDGET = 2000000; // instructions per Run, so the deadline is checked

// ONE_REG ids (Linux encoding: KVM_REG_RISCV | KVM_REG_SIZE_U64 | type | index).
const REG_CORE = (index) => (0x8030000002000000n | BigInt(index)).toString();
const REG_PC = REG_CORE(0);
const REG_A0 = REG_CORE(10);
const REG_A1 = REG_CORE(11);
const REG_SBI_EXT_DBCN = (0x8030000008000000n | 9n).toString(); // KVM_RISCV_SBI_EXT_DBCN = 9

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

// ---------------------------------------------------------------------------
// gRPC

function loadKvmService() {
  const definition = protoLoader.loadSync('rvkvm/v1/kvm.proto', {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto (vm_id, not vmId)
    longs: String, // 64-bit integers as decimal strings (-> BigInt here)
    enums: String,
    bytes: Buffer,
    defaults: true,
    oneofs: true, // Exit.kind / Completion.kind name the field that is set
  });
  return grpc.loadPackageDefinition(definition).rvkvm.v1.Kvm;
}

class KvmClient {
  constructor(address) {
    const Kvm = loadKvmService();
    this.stub = new Kvm(address, grpc.credentials.createInsecure());
  }

  call(method, request) {
    return new Promise((resolve, reject) => {
      this.stub[method](request, (err, response) => {
        if (err) {
          reject(new Error(`${method}: ${grpc.status[err.code]}: ${err.details}`));
        } else {
          resolve(response);
        }
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
    call.on('error', (err) => fail(new Error(`RunStream: ${grpc.status[err.code]}: ${err.details}`)));
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
// A minimal flattened device tree (devicetree spec v0.4, ch. 5), as
// client/fdt.py writes it. Values: string, number (one u32 cell), array of
// numbers (cells), true (empty property).

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
      { name: 'chosen', props: { bootargs: '' } },
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
    ],
  };
}

// ---------------------------------------------------------------------------
// the VMM

function u64le(value) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(value) & U64_MASK);
  return b;
}

async function main(argv) {
  const positional = [];
  let timeoutS = DEFAULT_TIMEOUT_S;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--timeout') timeoutS = Number(argv[++i]);
    else positional.push(argv[i]);
  }
  if (positional.length < 1 || positional.length > 2 || !(timeoutS > 0)) {
    process.stderr.write('usage: node run_hello.js HOST:PORT [GUEST.elf] [--timeout SECONDS]\n');
    return 2;
  }
  const [address, guestPath = HELLO_GUEST] = positional;
  const elf = parseElf(fs.readFileSync(guestPath));

  const kvm = new KvmClient(address);
  try {
    const info = await kvm.call('GetHostInfo', {});
    const maxTransfer = Number(BigInt(info.limits ? info.limits.max_transfer : 0)) || 65536;
    const { vm_id } = await kvm.call('CreateVm', { abi_profile: '' });
    try {
      await kvm.call('SetUserMemoryRegion', { vm_id, slot: 0, flags: 0,
        guest_phys_addr: RAM_BASE.toString(), memory_size: RAM_SIZE.toString() });

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
          throw new Error(`segment at 0x${seg.paddr.toString(16)} is outside RAM`);
        }
        await write(seg.paddr, seg.data);
        const bss = Number(seg.memsz) - seg.data.length;
        if (bss > 0) await write(seg.paddr + BigInt(seg.data.length), Buffer.alloc(bss));
      }
      const dtb = toDtb(deviceTree(info));
      const dtbAddr = RAM_BASE + RAM_SIZE - DTB_ROOM;
      await write(dtbAddr, dtb);

      const vcpu = { vm_id, vcpu_id: 0 };
      await kvm.call('CreateVcpu', vcpu);
      // KVM leaves DBCN to the VMM, off by default.
      await kvm.call('SetOneReg', { vcpu, id: REG_SBI_EXT_DBCN, value: u64le(1) });
      await kvm.call('SetOneReg', { vcpu, id: REG_PC, value: u64le(elf.entry) });
      await kvm.call('SetOneReg', { vcpu, id: REG_A0, value: u64le(0) });
      await kvm.call('SetOneReg', { vcpu, id: REG_A1, value: u64le(dtbAddr) });

      return await runLoop(kvm, vcpu, read, Date.now() + timeoutS * 1000);
    } finally {
      await kvm.call('DestroyVm', { vm_id }).catch(() => {});
    }
  } finally {
    kvm.close();
  }
}

async function runLoop(kvm, vcpu, read, deadline) {
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
        case 'mmio':
          // no devices: loads read 0, stores are dropped
          if (!exit.mmio.is_write) completion = { mmio: { data: Buffer.alloc(exit.mmio.len) } };
          break;
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

// Returns [SBI error, value] for a0/a1.
async function serveSbi(sbi, read) {
  const eid = BigInt(sbi.extension_id);
  const fid = BigInt(sbi.function_id);
  const args = sbi.args.map((a) => BigInt(a));
  while (args.length < 6) args.push(0n);
  const out = (data) => new Promise((resolve) => process.stdout.write(data, resolve));
  if (eid === SBI_EXT_DBCN) {
    if (fid === DBCN_CONSOLE_WRITE) {
      const numBytes = args[0];
      const base = args[1] | (args[2] << 64n); // high part: rv32 only
      let data;
      try {
        data = await read(base, numBytes);
      } catch (err) {
        return [SBI_ERR_INVALID_PARAM, 0n];
      }
      await out(data);
      return [SBI_SUCCESS, numBytes];
    }
    if (fid === DBCN_CONSOLE_READ) return [SBI_SUCCESS, 0n]; // no console input
    if (fid === DBCN_CONSOLE_WRITE_BYTE) {
      await out(Buffer.from([Number(args[0] & 0xffn)]));
      return [SBI_SUCCESS, 0n];
    }
  } else if (eid === SBI_EXT_0_1_CONSOLE_PUTCHAR) {
    await out(Buffer.from([Number(args[0] & 0xffn)]));
    return [SBI_SUCCESS, 0n];
  }
  return [SBI_ERR_NOT_SUPPORTED, 0n];
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

module.exports = { parseElf, toDtb, deviceTree };
