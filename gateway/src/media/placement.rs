//! Which media worker carries which room: a new room goes to the worker with the fewest legs,
//! and every later leg of that room follows it there, so a room's mix never crosses threads.

use std::collections::HashMap;

use super::ParticipantId;
use crate::ids::RoomNumber;
use crate::limits::shrink_sparse;

#[derive(Debug)]
pub(super) struct Placement {
    /// Legs on each worker.
    load: Vec<usize>,
    /// Each room's worker and how many legs it has there.
    rooms: HashMap<RoomNumber, (usize, usize)>,
    /// Each leg's room.
    legs: HashMap<ParticipantId, RoomNumber>,
}

impl Placement {
    /// `workers` ≥ 1.
    pub fn new(workers: usize) -> Placement {
        Placement { load: vec![0; workers.max(1)], rooms: HashMap::new(), legs: HashMap::new() }
    }

    /// Places a new leg of `room`: the room's worker, or for a room not yet placed the least
    /// loaded one (the lowest-numbered among equals). An id placed before moves with it.
    pub fn add(&mut self, id: ParticipantId, room: &RoomNumber) -> usize {
        self.remove(id);
        let least = (0..self.load.len()).min_by_key(|&w| self.load[w]).unwrap_or(0);
        let (worker, legs) = self.rooms.entry(room.clone()).or_insert((least, 0));
        *legs += 1;
        self.load[*worker] += 1;
        self.legs.insert(id, room.clone());
        *worker
    }

    /// Takes a leg off its worker; a room left without legs is free to go elsewhere next time.
    pub fn remove(&mut self, id: ParticipantId) -> Option<usize> {
        let room = self.legs.remove(&id)?;
        let (worker, legs) = self.rooms.get_mut(&room)?;
        let worker = *worker;
        *legs -= 1;
        self.load[worker] -= 1;
        if *legs == 0 {
            self.rooms.remove(&room);
            shrink_sparse(&mut self.rooms);
            shrink_sparse(&mut self.legs);
        }
        Some(worker)
    }

    pub fn worker_of(&self, id: ParticipantId) -> Option<usize> {
        self.legs.get(&id).and_then(|room| self.room_worker(room))
    }

    pub fn room_worker(&self, room: &RoomNumber) -> Option<usize> {
        self.rooms.get(room).map(|(worker, _)| *worker)
    }

    /// Legs on `worker`.
    pub fn load(&self, worker: usize) -> usize {
        self.load.get(worker).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(n: &str) -> RoomNumber {
        RoomNumber::from(n)
    }

    #[test]
    fn a_room_stays_on_one_worker_and_new_rooms_go_to_the_least_loaded() {
        let mut p = Placement::new(3);
        assert_eq!(p.add(ParticipantId(1), &room("1000")), 0);
        assert_eq!(p.add(ParticipantId(2), &room("1000")), 0, "the room's second leg follows it");
        assert_eq!(p.add(ParticipantId(3), &room("2000")), 1);
        assert_eq!(p.add(ParticipantId(4), &room("3000")), 2);
        assert_eq!(p.add(ParticipantId(5), &room("4000")), 1, "workers 1 and 2 carry one leg each");
        assert_eq!((p.load(0), p.load(1), p.load(2)), (2, 2, 1));
        assert_eq!(p.worker_of(ParticipantId(2)), Some(0));
        assert_eq!(p.room_worker(&room("4000")), Some(1));
    }

    #[test]
    fn a_room_without_legs_is_placed_afresh() {
        let mut p = Placement::new(2);
        p.add(ParticipantId(1), &room("1000"));
        p.add(ParticipantId(2), &room("2000"));
        p.add(ParticipantId(3), &room("2000"));
        assert_eq!(p.remove(ParticipantId(1)), Some(0));
        assert_eq!(p.remove(ParticipantId(1)), None, "removed once");
        assert_eq!(p.room_worker(&room("1000")), None);
        assert_eq!(p.add(ParticipantId(4), &room("3000")), 0, "worker 0 is empty now");
        assert_eq!(p.worker_of(ParticipantId(1)), None);
    }

    #[test]
    fn an_id_added_again_is_counted_once() {
        let mut p = Placement::new(2);
        p.add(ParticipantId(1), &room("1000"));
        p.add(ParticipantId(1), &room("1000"));
        assert_eq!(p.load(0), 1);
        assert_eq!(p.remove(ParticipantId(1)), Some(0));
        assert_eq!(p.load(0), 0);
    }

    #[test]
    fn one_worker_takes_everything() {
        let mut p = Placement::new(0);
        assert_eq!(p.add(ParticipantId(1), &room("1000")), 0);
        assert_eq!(p.add(ParticipantId(2), &room("2000")), 0);
    }
}
