#!/usr/bin/env node
// What grub-bios-setup does, on a plain image file (no loop device, no device.map):
// core.img goes to PART_START (the BIOS boot partition of a GPT disk, or the gap after an
// MBR), the blocklist at the end of its first sector is pointed at its other sectors, and
// boot.img's code goes into the MBR (partition table and BPB area kept), pointing at
// core.img, with the boot-drive check jump NOP'ed as grub-bios-setup does for hard disks.
// usage: grub-embed.mjs DISK BOOT_IMG CORE_IMG PART_START_LBA PART_SECTORS
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs'

const [disk, bootPath, corePath, startText, sectorsText] = process.argv.slice(2)
const SECTOR = 512
const KERNEL_SECTOR = 0x5c // grub/i386/pc/boot.h
const DRIVE_CHECK = 0x66
const BPB_START = 0x3
const BPB_END = 0x5a
const MBR_CODE_END = 0x1b8
const start = Number(startText)
const room = Number(sectorsText)

const boot = readFileSync(bootPath)
if (boot.length !== SECTOR) throw new Error('boot.img is not one sector')
const coreSectors = Math.ceil(readFileSync(corePath).length / SECTOR)
if (coreSectors > room) throw new Error('core.img does not fit where it should go')
const core = Buffer.alloc(coreSectors * SECTOR)
readFileSync(corePath).copy(core)

// diskboot.img's blocklist: { u64 start; u16 len; u16 segment } at the end of sector 0
const list = SECTOR - 12
if (core.readBigUInt64LE(list) !== 2n || core.readUInt16LE(list + 8) !== coreSectors - 1) throw new Error('unexpected core.img blocklist')
core.writeBigUInt64LE(BigInt(start + 1), list)

const fd = openSync(disk, 'r+')
try {
  const mbr = Buffer.alloc(SECTOR)
  readSync(fd, mbr, 0, SECTOR, 0)
  const code = Buffer.from(boot.subarray(0, MBR_CODE_END))
  mbr.copy(code, BPB_START, BPB_START, BPB_END) // the BPB area stays the disk's
  code.writeBigUInt64LE(BigInt(start), KERNEL_SECTOR)
  code[DRIVE_CHECK] = 0x90
  code[DRIVE_CHECK + 1] = 0x90
  code.copy(mbr, 0) // the partition table after MBR_CODE_END stays
  writeSync(fd, mbr, 0, SECTOR, 0)
  writeSync(fd, core, 0, core.length, start * SECTOR)
} finally {
  closeSync(fd)
}
console.log(`grub: core.img (${coreSectors} sectors) at LBA ${start}, boot.img in the MBR`)
